// Runs seqtag's ONNX graphs from Node.js (onnxruntime-node) and compares them with Python's
// ONNX Runtime and OnnxTagger (prepare.py writes the files and the reference); see README.md.
//
//   NODE_PATH=DIR/node_modules node benchmarks/node_onnx_check/check.js OUT
//
// For each OUT/NAME.json it runs the model in a child process (to read what ONNX Runtime prints
// on stderr) and checks, for files of format version 2: `with_marginals` is an input; fed true,
// the tags equal OnnxTagger's and the confidences and every output of the padded batch equal
// Python's within 1e-4; fed false, the tags and emissions are the same and confidence,
// marginals and log_partition are 0; no "Initializer ... appears in graph inputs" warning. A
// file of format version 1 (seqtag 0.2.0) is reported, not judged. Exit status 1 on a failure.
'use strict';

const childProcess = require('child_process');
const fs = require('fs');
const path = require('path');

const TOLERANCE = 1e-4;
const MARGINAL_OUTPUTS = ['confidence', 'marginals', 'log_partition'];

function tensor(ort, { type, dims, data }) {
  if (type === 'int64') return new ort.Tensor('int64', BigInt64Array.from(data.map(BigInt)), dims);
  if (type === 'bool') return new ort.Tensor('bool', Uint8Array.from(data.map(Number)), dims);
  if (type === 'float32') return new ort.Tensor('float32', Float32Array.from(data), dims);
  return new ort.Tensor('float64', Float64Array.from(data), dims);
}

function values(t) {
  return Array.from(t.data, (v) => Number(v));
}

function maxDiff(a, b) {
  if (a.length !== b.length) return Infinity;
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
}

async function checkOne(file) {
  const ort = require('onnxruntime-node');
  const ref = JSON.parse(fs.readFileSync(file, 'utf8'));
  const session = await ort.InferenceSession.create(path.join(path.dirname(file), ref.model), {
    logSeverityLevel: 2, // warnings and errors: what a default Node.js session prints
    intraOpNumThreads: 1,
  });
  const takesSwitch = session.inputNames.includes('with_marginals');
  const run = async (feed, withMarginals) => {
    const inputs = {};
    for (const [name, value] of Object.entries(feed)) {
      if (name !== 'with_marginals') inputs[name] = tensor(ort, value);
    }
    if (takesSwitch) inputs.with_marginals = new ort.Tensor('bool', Uint8Array.from([withMarginals ? 1 : 0]), []);
    return session.run(inputs);
  };
  const result = { inputs: session.inputNames, tagsEqual: true, confidenceDiff: 0, batchDiff: 0,
                   falseKeepsTags: true, falseZeroes: true, falseNonZero: [] };
  for (const sentence of ref.single) {
    const n = sentence.tags.length;
    const full = await run(sentence.feed, true);
    const fast = await run(sentence.feed, false);
    const tags = values(full.tags).slice(0, n);
    result.tagsEqual &&= JSON.stringify(tags) === JSON.stringify(sentence.tags);
    result.confidenceDiff = Math.max(result.confidenceDiff, maxDiff(values(full.confidence).slice(0, n), sentence.confidence));
    result.falseKeepsTags &&= JSON.stringify(values(fast.tags)) === JSON.stringify(values(full.tags));
  }
  const full = await run(ref.batch.feed, true);
  const fast = await run(ref.batch.feed, false);
  for (const [name, want] of Object.entries(ref.batch.outputs)) {
    const got = values(full[name]);
    if (name === 'tags') result.tagsEqual &&= JSON.stringify(got) === JSON.stringify(want.data);
    else result.batchDiff = Math.max(result.batchDiff, maxDiff(got, want.data));
  }
  for (const name of ['tags', 'emissions']) {
    result.falseKeepsTags &&= maxDiff(values(fast[name]), values(full[name])) === 0;
  }
  for (const name of MARGINAL_OUTPUTS) {
    if (values(fast[name]).some((v) => v !== 0)) {
      result.falseZeroes = false;
      result.falseNonZero.push(name);
    }
  }
  process.stdout.write(JSON.stringify(result));
}

function main() {
  if (process.argv[2] === '--one') {
    checkOne(process.argv[3]).catch((e) => {
      process.stderr.write(`${e.stack || e}\n`);
      process.exit(2);
    });
    return;
  }
  const out = process.argv[2];
  if (!out) {
    process.stderr.write('usage: node check.js OUT (the folder prepare.py wrote)\n');
    process.exit(2);
  }
  const ortVersion = require('onnxruntime-node/package.json').version;
  console.log(`Node.js ${process.version}, onnxruntime-node ${ortVersion}`);
  let failed = false;
  const files = fs.readdirSync(out).filter((f) => f.endsWith('.json')).sort();
  for (const name of files) {
    const file = path.join(out, name);
    const ref = JSON.parse(fs.readFileSync(file, 'utf8'));
    const child = childProcess.spawnSync(process.execPath, [__filename, '--one', file], { encoding: 'utf8' });
    const warned = /Initializer \S+ appears in graph inputs/.test(child.stderr);
    const label = `${ref.model} (format ${ref.format_version}, ${ref.head}${ref.encoder ? ', encoder' : ''})`;
    if (child.status !== 0) {
      console.log(`${label}: FAIL, the run ended with status ${child.status}: ${child.stderr.trim().split('\n').pop()}`);
      failed = true;
      continue;
    }
    const r = JSON.parse(child.stdout);
    const lines = [
      `inputs ${r.inputs.join(', ')}`,
      `with_marginals=true: tags ${r.tagsEqual ? 'equal' : 'DIFFER from'} OnnxTagger's, confidences within ` +
        `${r.confidenceDiff.toExponential(1)}, the batch's outputs within ${r.batchDiff.toExponential(1)} of Python's`,
      `with_marginals=false: tags and emissions ${r.falseKeepsTags ? 'unchanged' : 'CHANGED'}, ` +
        (r.falseZeroes ? 'confidence, marginals and log_partition 0' : `${r.falseNonZero.join(', ')} NOT 0 (false ignored)`),
      warned ? 'ONNX Runtime warned: "Initializer with_marginals appears in graph inputs"' : 'no initializer warning',
    ];
    const ok = r.inputs.includes('with_marginals') && r.tagsEqual && r.confidenceDiff <= TOLERANCE &&
      r.batchDiff <= TOLERANCE && r.falseKeepsTags && r.falseZeroes && !warned;
    const verdict = ref.format_version >= 2 ? (ok ? 'PASS' : 'FAIL') : 'format version 1, reported only';
    failed ||= ref.format_version >= 2 && !ok;
    console.log(`${label}: ${verdict}\n  ${lines.join('\n  ')}`);
  }
  if (!files.length) {
    console.log(`no .json files in ${out}: run prepare.py first`);
    failed = true;
  }
  process.exit(failed ? 1 : 0);
}

main();
