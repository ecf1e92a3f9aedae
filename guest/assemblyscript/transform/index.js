// The @essa/as compiler transform (asconfig.json's "transform").
//
// For every top-level function of an entry file marked `@essa` (or
// `@essa("name")`), it appends to that file, before the program is checked:
//
//   export function __essa_wrapper__NAME(len: i32): void   the export essa calls
//                                                          (docs/abi.md): decodes
//                                                          the arguments, calls the
//                                                          function, sets the result
//   function fnRemote(...params): Call<Result>             starts a remote call
//
// and `export function _start(): void { main(); }` if the file has a
// `function main(): void`. The function itself stays in the module but is no
// longer exported: essa calls it through its wrapper. After compiling, the
// transform adds the functions' signatures to the module as the custom
// section `essa.signatures` (docs/signatures.md). The source text of the file
// is kept in place (the decorators are blanked out), so the compiler's
// messages point at the lines as written.

import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// The compiler running this transform: the project's `assemblyscript` (the
// SDK may be a link to a checkout, which has no node_modules of its own).
async function loadCompiler() {
  for (const base of [process.cwd(), dirname(fileURLToPath(import.meta.url))]) {
    try {
      const manifest = createRequire(join(base, "package.json")).resolve("assemblyscript/package.json");
      return await import(pathToFileURL(join(dirname(manifest), "dist", "assemblyscript.js")).href);
    } catch {
      // not installed there; try the next place
    }
  }
  throw new Error("essa: the assemblyscript package is not installed (npm install assemblyscript)");
}

const as = await loadCompiler();
const { NodeKind, SourceKind, DiagnosticCode, ParameterKind } = as;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_PARAMS = 256;
const SCALARS = new Set(["string", "bool", "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f32", "f64"]);
const ALIASES = new Map([["boolean", "bool"], ["number", "f64"], ["Uint8Array", "bytes"]]);
const KEYS = new Set(["string", "bool", "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"]);
const TYPES_HELP = "string, Uint8Array, bool, u8..u64, i8..i64, f32, f64, Array<T>, Map<K, V>, T | null";

/** A type that has no signature type, with the reason in one line. */
class TypeProblem extends Error {}

/** The signature type (docs/signatures.md) of an AssemblyScript type node. */
function signatureType(node, isResult) {
  if (node.kind !== NodeKind.NamedType || node.name.next) {
    throw new TypeProblem(`${typeText(node)} has no essa type (use ${TYPES_HELP})`);
  }
  const name = node.name.identifier.text;
  const args = node.typeArguments || [];
  let type;
  if (name === "void" && isResult && !node.isNullable) {
    return "unit";
  } else if (name === "usize" || name === "isize") {
    const wide = name === "usize" ? "u64" : "i64";
    throw new TypeProblem(`${name} is 4 bytes here but 8 in essa's encoding: use ${wide}`);
  } else if (SCALARS.has(name) || ALIASES.has(name)) {
    type = ALIASES.get(name) || name;
  } else if (name === "Array" && args.length === 1) {
    type = `list<${signatureType(args[0], false)}>`;
  } else if (name === "Map" && args.length === 2) {
    const key = signatureType(args[0], false);
    if (!KEYS.has(key)) throw new TypeProblem(`a Map's key must be a string, bool or integer, not ${typeText(args[0])}`);
    type = `map<${key},${signatureType(args[1], false)}>`;
  } else {
    throw new TypeProblem(`${typeText(node)} has no essa type (use ${TYPES_HELP})`);
  }
  return node.isNullable ? `option<${type}>` : type;
}

function typeText(node) {
  return node.range.source.text.substring(node.range.start, node.range.end);
}

/** The `@essa` decorator of a declaration, if any. */
function essaDecorator(declaration) {
  for (const decorator of declaration.decorators || []) {
    if (decorator.name.kind === NodeKind.Identifier && decorator.name.text === "essa") return decorator;
  }
  return null;
}

export default class EssaTransform {
  afterParse(parser) {
    this.lines = [];
    const names = new Map();
    const report = (range, message) => parser.error(DiagnosticCode.User_defined_0, range, `essa: ${message}`);
    for (const source of parser.sources.slice()) {
      if (source.sourceKind !== SourceKind.User && source.sourceKind !== SourceKind.UserEntry) continue;
      const found = [];
      let main = null;
      let hasStart = false;
      for (const statement of source.statements) {
        if (statement.kind !== NodeKind.FunctionDeclaration) {
          if (essaDecorator(statement)) report(statement.range, "@essa marks a top-level function, not this");
          continue;
        }
        const fn = statement;
        if (fn.name.text === "main" && fn.signature.parameters.length === 0) main = fn;
        if (fn.name.text === "_start") hasStart = true;
        const decorator = essaDecorator(fn);
        if (!decorator) continue;
        const described = this.describe(fn, decorator, report);
        if (!described) continue;
        if (names.has(described.name)) {
          report(decorator.range, `two functions are called ${described.name}`);
          continue;
        }
        names.set(described.name, fn);
        found.push(described);
      }
      if (!found.length && !(main && source.sourceKind === SourceKind.UserEntry)) continue;
      if (source.sourceKind !== SourceKind.UserEntry) {
        for (const f of found) report(f.decorator.range, `${f.name}: @essa functions must be in an entry file (asconfig.json's "entries")`);
        continue;
      }
      for (const f of found) this.lines.push(signatureLine(f));
      this.reparse(parser, source, found, main && !hasStart ? main : null);
    }
  }

  // What the transform needs of one @essa function, or null (and an error) if it cannot be one.
  describe(fn, decorator, report) {
    const where = fn.name.text;
    let name = where;
    const args = decorator.args || [];
    if (args.length > 1 || (args.length === 1 && args[0].kind !== NodeKind.Literal)) {
      report(decorator.range, `${where}: @essa takes at most one argument, the function's name as a string`);
      return null;
    }
    if (args.length === 1) {
      if (typeof args[0].value !== "string") {
        report(decorator.range, `${where}: @essa's argument is the function's name, a string`);
        return null;
      }
      name = args[0].value;
    }
    if (!NAME.test(name) || name.length > 255) {
      report(decorator.range, `${where}: ${JSON.stringify(name)} is not a function name for essa ([A-Za-z_][A-Za-z0-9_]*, at most 255 characters); name it with @essa("name")`);
      return null;
    }
    if (fn.typeParameters && fn.typeParameters.length) {
      report(fn.name.range, `${name}: an @essa function cannot be generic`);
      return null;
    }
    const params = [];
    for (const param of fn.signature.parameters) {
      if (param.parameterKind === ParameterKind.Rest) {
        report(param.range, `${name}: an @essa function cannot take rest parameters`);
        return null;
      }
      if (!NAME.test(param.name.text)) {
        report(param.name.range, `${name}: parameter ${param.name.text}: not a parameter name for essa ([A-Za-z_][A-Za-z0-9_]*)`);
        return null;
      }
      try {
        params.push({ name: param.name.text, type: signatureType(param.type, false), text: typeText(param.type) });
      } catch (problem) {
        if (!(problem instanceof TypeProblem)) throw problem;
        report(param.type.range, `${name}: parameter ${param.name.text}: ${problem.message}`);
        return null;
      }
    }
    if (params.length > MAX_PARAMS) {
      report(fn.name.range, `${name}: an @essa function takes at most ${MAX_PARAMS} parameters`);
      return null;
    }
    let result;
    try {
      result = signatureType(fn.signature.returnType, true);
    } catch (problem) {
      if (!(problem instanceof TypeProblem)) throw problem;
      report(fn.signature.returnType.range, `${name}: its result: ${problem.message}`);
      return null;
    }
    const resultText = result === "unit" ? "void" : typeText(fn.signature.returnType);
    return { name, local: fn.name.text, fn, decorator, params, result, resultText };
  }

  // Parses the file again as it was written, with the decorators blanked and the generated code after it.
  reparse(parser, source, found, main) {
    let text = source.text;
    const blank = (start, end) => {
      text = text.substring(0, start) + text.substring(start, end).replace(/[^\n]/g, " ") + text.substring(end);
    };
    for (const f of found) {
      blank(f.decorator.range.start, f.decorator.range.end);
      // Not exported itself: essa calls it through its wrapper, and an export
      // of type (i32) -> () would look callable with raw bytes.
      const head = text.substring(f.decorator.range.end, f.fn.name.range.start);
      const keyword = /\bexport\b/.exec(head);
      if (keyword) blank(f.decorator.range.end + keyword.index, f.decorator.range.end + keyword.index + 6);
    }
    text += generate(found, main);
    parser.sources.splice(parser.sources.indexOf(source), 1);
    parser.donelog.delete(source.internalPath);
    parser.parseFile(text, source.normalizedPath, true);
  }

  afterCompile(module) {
    if (this.lines && this.lines.length) {
      module.addCustomSection("essa.signatures", new TextEncoder().encode(this.lines.join("")));
    }
  }
}

function signatureLine(f) {
  const params = f.params.map((p) => ({ name: p.name, type: p.type }));
  return JSON.stringify({ name: f.name, params, result: f.result }) + "\n";
}

// The code added to an entry file (names start with __essa_ so they meet nothing of the user's).
function generate(found, main) {
  const out = ["", "// ---- generated by @essa/as ----"];
  if (found.length) {
    out.push(
      'import { Reader as __essa_Reader, Writer as __essa_Writer, Call as __essa_Call, ' +
        'callRaw as __essa_callRaw, getArgs as __essa_getArgs, setResult as __essa_setResult } from "@essa/as";',
    );
  }
  for (const f of found) {
    const locals = f.params.map((_, i) => `__essa_a${i}`);
    out.push(`export function __essa_wrapper__${f.name}(__essa_len: i32): void {`);
    out.push(`  const __essa_r = new __essa_Reader(__essa_getArgs(__essa_len), ${JSON.stringify(`${f.name}: its arguments`)});`);
    f.params.forEach((p, i) => out.push(`  const ${locals[i]} = __essa_r.read<${p.text}>();`));
    out.push("  __essa_r.finish();");
    if (f.result === "unit") {
      out.push(`  ${f.local}(${locals.join(", ")});`);
      out.push("  __essa_setResult(new Uint8Array(0));");
    } else {
      out.push("  const __essa_w = new __essa_Writer();");
      out.push(`  __essa_w.write<${f.resultText}>(${f.local}(${locals.join(", ")}));`);
      out.push("  __essa_setResult(__essa_w.finish());");
    }
    out.push("}");
    const params = f.params.map((p, i) => `${locals[i]}: ${p.text}`);
    out.push(`function ${f.local}Remote(${params.join(", ")}): __essa_Call<${f.resultText}> {`);
    out.push("  const __essa_w = new __essa_Writer();");
    f.params.forEach((p, i) => out.push(`  __essa_w.write<${p.text}>(${locals[i]});`));
    out.push(`  return new __essa_Call<${f.resultText}>(__essa_callRaw(${JSON.stringify(f.name)}, __essa_w.finish()));`);
    out.push("}");
  }
  if (main) out.push(`export function _start(): void {`, `  ${main.name.text}();`, `}`);
  return out.join("\n") + "\n";
}
