#!/usr/bin/env node
// Compiles every contracts/src/**/*.sol with the pinned solcjs and writes one deterministic
// artifact per contract to contracts/artifacts/<ContractName>.json (sorted keys, 2-space indent,
// trailing newline), so the committed artifacts can be proven to match the sources.
//
//   node contracts/build.mjs           write the artifacts (and remove stale ones)
//   node contracts/build.mjs --check   compile in memory; exit 1 listing artifacts that differ
//
// Imports such as "@openzeppelin/contracts/..." resolve from contracts/node_modules
// (`npm ci --prefix contracts` first).

import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.dirname(fileURLToPath(import.meta.url));
const SRC = path.join(ROOT, "src");
const ARTIFACTS = path.join(ROOT, "artifacts");
const NODE_MODULES = path.join(ROOT, "node_modules");

const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
};

function fail(line) {
  console.error(`build.mjs: ${line}`);
  process.exit(1);
}

function toPosix(p) {
  return p.split(path.sep).join("/");
}

function findSources(dir) {
  if (!fs.existsSync(dir)) return [];
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...findSources(full));
    else if (entry.isFile() && entry.name.endsWith(".sol")) found.push(full);
  }
  return found.sort();
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, sortKeys(value[key])]),
    );
  }
  return value;
}

function serialize(artifact) {
  return `${JSON.stringify(sortKeys(artifact), null, 2)}\n`;
}

// Source unit names are paths relative to contracts/ ("src/Foo.sol") or package paths
// ("@openzeppelin/contracts/..."); anything escaping those folders is refused.
function findImport(unitName) {
  for (const base of [NODE_MODULES, ROOT]) {
    const full = path.resolve(base, unitName);
    if (!full.startsWith(base + path.sep)) continue;
    if (fs.existsSync(full)) return { contents: fs.readFileSync(full, "utf8") };
  }
  const hint = fs.existsSync(NODE_MODULES) ? "" : " (run npm ci --prefix contracts)";
  return { error: `import not found: ${unitName}${hint}` };
}

async function loadSolc() {
  try {
    return (await import("solc")).default;
  } catch {
    return fail("solc is not installed: run npm ci --prefix contracts");
  }
}

async function compile(files) {
  const solc = await loadSolc();
  const sources = {};
  const hashes = {};
  for (const file of files) {
    const unitName = toPosix(path.relative(ROOT, file));
    const content = fs.readFileSync(file);
    sources[unitName] = { content: content.toString("utf8") };
    hashes[unitName] = createHash("sha256").update(content).digest("hex");
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const diagnostics = output.errors ?? [];
  const errors = diagnostics.filter((d) => d.severity === "error");
  for (const d of diagnostics) console.error(d.formattedMessage ?? d.message);
  if (errors.length > 0) {
    fail(`compilation failed with ${errors.length} error(s) (messages above)`);
  }

  const artifacts = new Map();
  for (const unitName of Object.keys(sources)) {
    const contracts = output.contracts?.[unitName] ?? {};
    for (const [contractName, contract] of Object.entries(contracts)) {
      const fileName = `${contractName}.json`;
      if (artifacts.has(fileName)) {
        fail(`contract name ${contractName} is defined twice; artifact names must be unique`);
      }
      artifacts.set(
        fileName,
        serialize({
          contractName,
          sourceName: unitName,
          abi: contract.abi,
          bytecode: `0x${contract.evm.bytecode.object}`,
          deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
          compiler: { version: solc.version(), settings: SETTINGS },
          sourceHash: hashes[unitName],
        }),
      );
    }
  }
  return artifacts;
}

function committedArtifacts() {
  if (!fs.existsSync(ARTIFACTS)) return [];
  return fs
    .readdirSync(ARTIFACTS)
    .filter((name) => name.endsWith(".json"))
    .sort();
}

async function main(argv) {
  const unknown = argv.filter((arg) => arg !== "--check");
  if (unknown.length > 0) fail(`unknown argument ${unknown[0]} (usage: build.mjs [--check])`);
  const check = argv.includes("--check");

  const files = findSources(SRC);
  if (files.length === 0) console.log("no sources under contracts/src");
  const built = files.length === 0 ? new Map() : await compile(files);
  const committed = committedArtifacts();

  if (check) {
    const differing = [];
    for (const [name, text] of built) {
      const target = path.join(ARTIFACTS, name);
      if (!fs.existsSync(target)) differing.push(`${name} (missing)`);
      else if (fs.readFileSync(target, "utf8") !== text) differing.push(`${name} (differs)`);
    }
    for (const name of committed) {
      if (!built.has(name)) differing.push(`${name} (no contract of that name in src)`);
    }
    if (differing.length > 0) {
      console.error("artifacts out of date with contracts/src:");
      for (const line of differing.sort()) console.error(`  contracts/artifacts/${line}`);
      console.error("run: npm run build --prefix contracts");
      process.exit(1);
    }
    if (built.size > 0) console.log(`${built.size} artifact(s) match contracts/src`);
    return;
  }

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const [name, text] of built) fs.writeFileSync(path.join(ARTIFACTS, name), text);
  for (const name of committed) {
    if (!built.has(name)) {
      fs.rmSync(path.join(ARTIFACTS, name));
      console.log(`removed stale contracts/artifacts/${name}`);
    }
  }
  if (built.size > 0) {
    console.log(`wrote ${built.size} artifact(s) to contracts/artifacts: ${[...built.keys()].join(", ")}`);
  }
}

await main(process.argv.slice(2));
