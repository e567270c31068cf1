#!/usr/bin/env python3
"""The code map's two structural rules, checked (ARCHITECTURE.md):

1. No source file imports another that imports it back, directly or around
   a circle. A file's imports are the modules of its crate it names: `use`
   items and paths in code (`crate::x::y`, `super::z`, a child module's name).
   Cargo already keeps the crates themselves in one direction.
2. No source file outside `tests/` is over 700 lines (in-file test modules
   count), unless its opening comment says it is one cohesive thing (the
   words "one cohesive").

Prints what breaks a rule and exits 1 if anything does; `--report` prints
the largest files and the import edges as well.
"""

import os
import re
import sys

MAX_LINES = 700
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_files(src):
    """{module path tuple: file} for one crate's src/ dir."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, src)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main") and len(rel) == 1:
                path = ()
            elif rel[-1] == "mod":
                path = tuple(rel[:-1])
            else:
                path = tuple(rel)
            if "bin" in rel[:1]:
                continue
            mods[path] = full
    return mods


TOKENS = re.compile(
    r'(?P<raw>r(?P<h>#*)"(?:.|\n)*?"(?P=h))'
    r'|(?P<str>b?"(?:[^"\\]|\\.)*")'
    r"|(?P<chr>b?'(?:[^'\\\n]|\\[^'\n]+)')"
    r"|(?P<line>//[^\n]*)"
    r"|(?P<block>/\*(?:.|\n)*?\*/)",
    flags=re.S,
)


def strip_comments(text):
    """Code without comments, and with every string and char literal emptied.

    One left-to-right pass, so a `//` inside a string is not a comment and a
    quote inside a comment opens no string.
    """

    def blank(m):
        if m.group("line") or m.group("block"):
            return " "
        if m.group("chr"):
            return "' '"
        return '""'

    return TOKENS.sub(blank, text)


def expand_use(body):
    """Paths of a `use` tree: `a::{b, c::{d, e}}` -> a::b, a::c::d, a::c::e."""
    body = body.strip()
    m = re.match(r"^(.*?)\{(.*)\}$", body, flags=re.S)
    if not m:
        return [re.sub(r"\s+as\s+\w+$", "", body).strip()]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        p = p.strip()
        if not p:
            continue
        if p == "self":
            out.append(prefix.rstrip(":"))
        else:
            out.extend(expand_use(prefix + p))
    return out


def imports(path, text, mods):
    """The modules (path tuples) of this crate that a file names."""
    here = path
    # In `a/mod.rs` and `a.rs` alike, `super` is the parent of module a.
    parent = here[:-1]
    code = strip_comments(text)
    # Leave out in-file test modules: they import their own file.
    code = re.sub(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{.*", "", code, flags=re.S)
    children = {p[len(here)] for p in mods if len(p) == len(here) + 1 and p[: len(here)] == here}
    raw = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        raw.extend(expand_use(m.group(1)))
    raw.extend(m.group(0) for m in re.finditer(rf"\b(?:crate|super)(?:::{IDENT})+", code))
    for child in children:
        if re.search(rf"(?<![\w:]){child}::", code):
            raw.append(f"self::{child}")
    found = set()
    for r in raw:
        segs = [s for s in r.replace(" ", "").split("::") if s]
        if not segs:
            continue
        if segs[0] == "crate":
            base, rest = (), segs[1:]
        elif segs[0] == "super":
            base, rest = parent, segs[1:]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        elif segs[0] == "self":
            base, rest = here, segs[1:]
        elif segs[0] in children:
            base, rest = here, segs
        else:
            continue
        target = base
        for s in rest:
            if target + (s,) in mods:
                target = target + (s,)
            else:
                break
        if target != here and target in mods:
            found.add(target)
    return found


def cycles(graph):
    """Strongly connected components with more than one file."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def cohesive(text):
    head = []
    for line in text.splitlines():
        if line.startswith("//!"):
            head.append(line)
        elif head:
            break
    return "one cohesive" in " ".join(head)


def main():
    report = "--report" in sys.argv
    crates = os.path.join(ROOT, "crates")
    failed = False
    sizes = []
    for crate in sorted(os.listdir(crates)):
        src = os.path.join(crates, crate, "src")
        if not os.path.isdir(src):
            continue
        mods = module_files(src)
        graph = {}
        for path, f in mods.items():
            text = open(f, encoding="utf-8").read()
            graph[f] = {mods[t] for t in imports(path, text, mods)}
            n = text.count("\n")
            sizes.append((n, os.path.relpath(f, ROOT)))
            if n > MAX_LINES and not cohesive(text):
                failed = True
                print(f"too long: {os.path.relpath(f, ROOT)} has {n} lines (at most {MAX_LINES}, or say it is one cohesive thing)")
        for comp in cycles(graph):
            failed = True
            names = ", ".join(sorted(os.path.relpath(f, ROOT) for f in comp))
            print(f"import circle in {crate}: {names}")
        if report:
            for f, deps in sorted(graph.items()):
                for d in sorted(deps):
                    print(f"  {os.path.relpath(f, crates)} -> {os.path.relpath(d, crates)}")
    if report:
        for n, f in sorted(sizes, reverse=True)[:15]:
            print(f"{n:6} {f}")
    if not failed:
        print("layout: no import circles; no file over the length limit")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
