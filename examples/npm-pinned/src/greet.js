"use strict";

/** Greets someone, politely or not. */
function greet(name, options) {
  const polite = options === undefined ? true : Boolean(options.polite);
  const greeting = polite ? "Good day" : "Hey";
  return `${greeting}, ${name}!`;
}

/** Greets everyone in a list, one line each. */
function greetAll(names, options) {
  return names.map((name) => greet(name, options)).join("\n");
}

module.exports = { greet, greetAll };
