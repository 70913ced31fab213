/**
 * The import graph of the repository: every .ts/.mjs file of runtime, trainer, device-agent, scripts, bench,
 * packaging and test, parsed (TypeScript's parser, so comments and strings never count) for its relative imports:
 * static, `export … from`, `import type` and `import('…')` with a literal. No cycles anywhere; no code outside
 * test/ imports test/; the release build compiles no test code; runtime/ imports nothing else from the repo, and
 * each kernel backend only the format and the Runner contract (ARCHITECTURE.md, "Runtime").
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIRS = ['runtime', 'trainer', 'device-agent', 'scripts', 'bench', 'packaging', 'test'];

/** Repository-relative path with forward slashes. */
const rel = (abs: string) => relative(ROOT, abs).split(sep).join('/');

function sourceFiles(): string[] {
  const out: string[] = [];
  for (const dir of DIRS) {
    for (const entry of readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })) {
      const path = rel(join(entry.parentPath, entry.name));
      if (entry.isFile() && /\.(ts|mjs)$/.test(path) && !path.split('/').includes('node_modules')) out.push(path);
    }
  }
  return out.sort();
}

/** The file a relative specifier names: `x.js` is its `x.ts` source when that exists. */
function resolveSpecifier(from: string, spec: string): string {
  const target = resolve(ROOT, dirname(from), spec);
  const source = target.replace(/\.js$/, '.ts');
  return rel(!existsSync(target) && existsSync(source) ? source : target);
}

/** Relative imports of one file, resolved. */
function importsOf(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(join(ROOT, file), 'utf8'), ts.ScriptTarget.Latest, false);
  const specs: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      specs.push(node.moduleSpecifier.text);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      specs.push(node.arguments[0].text);
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      specs.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return specs.filter((s) => s.startsWith('.')).map((s) => resolveSpecifier(file, s));
}

const files = sourceFiles();
const graph = new Map(files.map((f) => [f, importsOf(f)]));
const isTest = (f: string) => f.startsWith('test/');

/** Strongly connected components of more than one file (or a file importing itself): each holds a cycle. */
function cycles(): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const connect = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || graph.get(v)!.includes(v)) found.push(component);
  };
  for (const f of files) if (!index.has(f)) connect(f);
  return found.map(cycleIn);
}

/** One cycle through a component, as the import chain `a → b → … → a` (shortest, by breadth-first search). */
function cycleIn(component: string[]): string[] {
  const members = new Set(component);
  const start = [...component].sort()[0]!;
  const parent = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of graph.get(v)!) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = parent.get(u)!) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!parent.has(w)) {
        parent.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/** Imports of files matching `from` that go to a file for which `allowed` is false, as `a -> b` lines. */
function violations(from: (f: string) => boolean, allowed: (target: string, file: string) => boolean): string[] {
  return [...graph]
    .filter(([f]) => from(f))
    .flatMap(([f, targets]) => targets.filter((t) => !allowed(t, f)).map((t) => `${f} -> ${t}`));
}

test('the parser sees every kind of relative import (a static, a type-only, a re-export and a lazy one)', () => {
  assert.ok(files.length > 100, `only ${files.length} files found`);
  assert.ok(graph.get('runtime/index.ts')!.includes('runtime/engine/index.ts'), 'export … from');
  assert.ok(graph.get('runtime/engine/types.ts')!.includes('runtime/kernels/runner.ts'), 'import type');
  assert.ok(graph.get('scripts/model-arg.ts')!.includes('runtime/format/random-model.ts'), "import('…')");
  assert.ok(graph.get('scripts/commands/index.ts')!.includes('scripts/commands/run.ts'), 'lazy command import');
});

test('no import cycle anywhere in the repository', () => {
  const found = cycles();
  assert.deepEqual(
    found.map((c) => c.join(' -> ')),
    [],
    `import cycles:\n${found.map((c) => `  ${c.join(' -> ')}`).join('\n')}`,
  );
});

test('code outside test/ never imports test/', () => {
  assert.deepEqual(
    violations(
      (f) => !isTest(f),
      (t) => !isTest(t),
    ),
    [],
  );
});

test('the release build (tsconfig.build.json) compiles no test code, directly or through an import', () => {
  const config = ts.getParsedCommandLineOfConfigFile(
    join(ROOT, 'tsconfig.build.json'),
    {},
    { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => assert.fail(String(d.messageText)) },
  )!;
  const reached = new Set<string>();
  const visit = (f: string): void => {
    if (reached.has(f)) return;
    reached.add(f);
    for (const t of graph.get(f) ?? []) visit(t);
  };
  config.fileNames.map(rel).forEach(visit);
  assert.ok(
    reached.has('runtime/index.ts') && reached.has('scripts/cli.ts'),
    'the release project lists the runtime and the CLI',
  );
  assert.deepEqual([...reached].filter(isTest), []);
});

test('runtime/ imports nothing else from the repository; each kernel backend only the format, the Runner contract and the seeded generator', () => {
  assert.deepEqual(
    violations(
      (f) => f.startsWith('runtime/'),
      (t) => t.startsWith('runtime/'),
    ),
    [],
  );
  for (const backend of ['runtime/kernels/reference/', 'runtime/kernels/wasm/']) {
    const allowed = (t: string) =>
      t.startsWith(backend) ||
      t.startsWith('runtime/format/') ||
      t === 'runtime/kernels/runner.ts' ||
      t === 'runtime/data/random.ts';
    assert.deepEqual(
      violations((f) => f.startsWith(backend), allowed),
      [],
      backend,
    );
  }
  assert.deepEqual(
    violations(
      (f) => f.startsWith('runtime/kernels/'),
      (t) => !t.startsWith('runtime/engine/'),
    ),
    [],
    'kernels/ never imports engine/',
  );
});

test('bench/ may import the CLI, the CLI never imports bench/', () => {
  assert.deepEqual(
    violations(
      (f) => !f.startsWith('bench/'),
      (t) => !t.startsWith('bench/'),
    ),
    [],
  );
});
