// The bundled examples: small flat-colour scenes drawn for this project (tests/browser/make_examples.py),
// each with an instruction that names one object, so the plan has something to box.

export const EXAMPLES = [
  { file: "examples/desk.png", title: "Desk", instruction: "replace the used cup on the desk with a small potted plant" },
  { file: "examples/street.png", title: "Street", instruction: "make the red car blue" },
  { file: "examples/fruit.png", title: "Fruit", instruction: "remove the banana from the table" },
];
