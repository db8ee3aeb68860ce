#!/usr/bin/env node
// Prints the native source files of one kind ("cpp" or "cuda"), from native/sources.json.
// Used by CMakeLists.txt and binding.gyp so both builds compile the same list.
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const kind = process.argv[2] || 'cpp';
const sep = process.argv[3] === '--lines' ? '\n' : ' ';
const dirs = JSON.parse(fs.readFileSync(path.join(root, 'native/sources.json'), 'utf8'))[kind] || [];
const ext = kind === 'cuda' ? '.cu' : '.cpp';
const files = [];
for (const d of dirs) {
  if (!fs.existsSync(path.join(root, d))) continue;
  for (const f of fs.readdirSync(path.join(root, d)).sort()) if (f.endsWith(ext)) files.push(`${d}/${f}`);
}
process.stdout.write(files.join(sep));
