"""Code blocks in the documentation that claim to be a real file are that file, byte for byte.

A block makes the claim with an HTML comment on the line just before its opening fence:

    <!-- file: examples/out-of-tree-plugin/greeter.cpp -->
    ```cpp
    ...the whole file...
    ```

The path is relative to the repository's root. Every Markdown file of the repository is
searched; a marker not followed by a fenced block, or naming a file that does not exist, fails
too. Run alone: `python3 tests/integration/test_docs.py` (HERD_SOURCE_DIR picks another tree).
"""
import os
import re
import unittest

SOURCE = os.path.abspath(os.environ.get("HERD_SOURCE_DIR",
                                        os.path.join(os.path.dirname(__file__), "..", "..")))
MARKER = re.compile(r"^<!-- file: (\S+) -->\s*$")
FENCE = re.compile(r"^(`{3,}|~{3,})")
# The blocks that must exist: the README's plugin example is the real out-of-tree plugin.
REQUIRED = {
    "README.md": ["examples/out-of-tree-plugin/greeter.cpp", "examples/out-of-tree-plugin/meson.build"],
}


def markdown_files():
    for root, dirs, files in os.walk(SOURCE):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "build")) and d != "node_modules")
        for name in sorted(files):
            if name.endswith(".md"):
                yield os.path.relpath(os.path.join(root, name), SOURCE)


def file_blocks(text):
    """[(marker line number, path, block text or None)] for every marker in a Markdown text."""
    lines = text.split("\n")
    found = []
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if not m:
            continue
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if not fence:
            found.append((i + 1, m.group(1), None))
            continue
        body = []
        for inner in lines[i + 2:]:
            if inner.startswith(fence.group(1)) and inner.strip() == inner.strip()[0] * len(inner.strip()) \
                    and len(inner.strip()) >= len(fence.group(1)):
                break
            body.append(inner)
        else:
            found.append((i + 1, m.group(1), None))
            continue
        found.append((i + 1, m.group(1), "\n".join(body) + "\n"))
    return found


def first_difference(expected, actual):
    """The 1-based line where two texts first differ, and that line in each."""
    a, b = expected.split("\n"), actual.split("\n")
    for n in range(max(len(a), len(b))):
        left = a[n] if n < len(a) else "<end of text>"
        right = b[n] if n < len(b) else "<end of text>"
        if left != right:
            return n + 1, left, right
    return None


class DocsTest(unittest.TestCase):
    def test_blocks_that_name_a_file_are_that_file(self):
        checked = 0
        for doc in markdown_files():
            with open(os.path.join(SOURCE, doc), encoding="utf-8") as f:
                text = f.read()
            for line, path, block in file_blocks(text):
                where = "%s:%d (file: %s)" % (doc, line, path)
                self.assertIsNotNone(block, "%s: the marker is not followed by a closed fenced block" % where)
                real = os.path.join(SOURCE, path)
                self.assertTrue(os.path.isfile(real), "%s: no such file in the repository" % where)
                with open(real, "rb") as f:
                    content = f.read()
                block_bytes = block.encode("utf-8")
                if block_bytes != content:
                    diff = first_difference(content.decode("utf-8", "replace"), block)
                    if diff is None:  # same lines: the bytes differ in line endings
                        diff = (0, repr(content[-20:]), repr(block_bytes[-20:]))
                    self.fail("%s: the block differs from %s at line %d of the file:\n  file:  %r\n  block: %r\n"
                              "copy the file into the block (or fix the file), byte for byte"
                              % (where, path, diff[0], diff[1], diff[2]))
                checked += 1
        self.assertGreater(checked, 0, "no block names a file")

    def test_required_blocks_are_marked(self):
        for doc, paths in REQUIRED.items():
            with open(os.path.join(SOURCE, doc), encoding="utf-8") as f:
                marked = [path for _, path, _ in file_blocks(f.read())]
            for path in paths:
                self.assertIn(path, marked, "%s must show %s in a block marked <!-- file: %s -->"
                              % (doc, path, path))


def declared_keys(source, signature):
    """{name: readme_default} of a key table in config.cpp: the entries of the function whose
    definition starts with signature, each `.name = "NAME"` followed by `.readme_default = "TEXT"`."""
    table = source[source.index(signature):]
    table = table[:table.index("return keys;")]
    entries = re.findall(r'\.name = "([a-z_]+)",\s*\.readme_default = "((?:[^"\\]|\\.)*)"', table)
    names = re.findall(r'\.name = "([a-z_]+)"', table)
    return {name: default.replace('\\"', '"') for name, default in entries}, names


def readme_config_rows():
    """The README's config reference: (first cell, last cell) of each row of the table whose
    header is | key | meaning | default |."""
    with open(os.path.join(SOURCE, "README.md")) as f:
        lines = f.read().split("\n")
    start = lines.index("| key | meaning | default |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows.append((cells[0], cells[-1]))
    return rows


class ConfigReference(unittest.TestCase):
    """Every config key, as server/core/config.cpp declares it (config_keys() for the top
    level, app_keys() for an app entry: the lists that parsing, the unknown-key check and
    reload use), has its row in the README's config reference with the default the table
    states, and the README documents no key that herd does not know."""

    def setUp(self):
        with open(os.path.join(SOURCE, "server", "core", "config.cpp")) as f:
            self.source = f.read()
        self.rows = readme_config_rows()

    def check(self, declared, names, documented, what):
        self.assertEqual(sorted(set(names) - set(declared)), [],
                         "%s keys without .readme_default right after .name" % what)
        self.assertEqual(sorted(set(declared) - set(documented)), [],
                         "%s keys without a README row" % what)
        self.assertEqual(sorted(set(documented) - set(declared)), [],
                         "README rows for %s keys herd does not know" % what)
        for name, default in sorted(declared.items()):
            self.assertEqual(documented[name], default,
                             "the README's default for %s %s is not the one config.cpp declares"
                             % (what, name))

    def test_every_app_key_has_a_readme_row_with_its_default(self):
        declared, names = declared_keys(self.source, "std::span<const AppKey> app_keys()")
        self.assertGreater(len(declared), 20, "the app key table was not found in config.cpp")
        documented = {}
        for key, default in self.rows:
            m = re.match(r"`apps\[\]\.([a-z_]+)(\[\])?`$", key)
            if m:
                documented[m.group(1)] = default
        self.check(declared, names, documented, "app")

    def test_every_top_level_key_has_a_readme_row_with_its_default(self):
        declared, names = declared_keys(self.source, "std::span<const ConfigKey> config_keys()")
        self.assertGreater(len(declared), 5, "the top-level key table was not found in config.cpp")
        documented = {}
        for key, default in self.rows:
            if "[]" in key:
                continue  # apps[].KEY and plugins[].KEY rows
            # A row may document several keys: "`user`, `group`".
            for name in re.findall(r"`([a-z_]+)`", key):
                documented[name] = default
        self.check(declared, names, documented, "top-level")


if __name__ == "__main__":
    unittest.main()
