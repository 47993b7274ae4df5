"""Text from files, models and users, shown as text: `md` makes a string safe to hand to Streamlit's Markdown.

Streamlit renders Markdown in st.markdown/st.write/st.caption/st.subheader, the alerts (st.error, st.warning,
st.info, st.success), st.toast, and in the labels and tooltips of widgets, expanders, tabs, metrics and radio
options. It escapes raw HTML, but it still draws images — `![x](http://host/x.png)` makes the browser fetch
from that host — and links, bare URLs (`http://…`, `www.…`, `a@b.org`), LaTeX (`$…$`), emoji shortcodes
(`:smile:`), Material icons (`:material/home:`), its logo (`:streamlit:`), coloured text (`:red[…]`),
emphasis, headings, lists, tables and footnotes. A layer name, a config key, a Hugging Face config field or an
error message quoting one of them must reach the page as the characters it holds (checked in a real browser
by tests/e2e/test_no_outside_requests.py, for every construct above).

`md` backslash-escapes (CommonMark: any ASCII punctuation may be escaped, and then shows as itself):
- everywhere: \\ ` * [ ] < > & ~ $ | # — so no image, link, code span, emphasis, strikethrough, math,
  table or heading can form;
- `_`, except inside a word (`patch_embed`), where CommonMark never reads it as emphasis;
- both colons of a shortcode, icon or colour (`:name:`, `:material/x:`, `:red[`) and the `/` of
  `:material/`: Streamlit loads its emoji plugin only if the source holds an unescaped `:name:` and rewrites
  `:material/` in the source, so escaped colons stop both (an element whose own, trusted text held a `:name:`
  would load the plugin for its whole text: none of the dashboard's does);
- a line's leading `-`, `+`, `=` or `1.`/`1)`, which would start a list or underline a heading.
Some transformations act on the parsed text, where escapes are gone: bare URLs and e-mail addresses become
links, `:material_home:` and `:streamlit:` become an icon and an image. There `md` puts an invisible WORD
JOINER (U+2060) after the `:` of `://`, between `www` and its dot, after `@`, and after the first colon of those
two icons: the page shows the same characters, nothing is clickable, but a copied URL holds the joiner.
Left as they are: ` -> `, ` <- `, ` -- `, ` >= `, ` <= ` (drawn as arrows, a dash and signs, by the same late
pass: the same meaning, and a joiner there would change a copied message) and everything ordinary (`layer1.0`,
`digits_cnn.py:build`, `it has: fc1, fc2`), so messages read the same in tests and logs.

Where a value reads better verbatim (a path, a command), st.code and st.text draw no Markdown at all.
"""

from __future__ import annotations

import re

JOINER = "\u2060"  # WORD JOINER: zero width, no line break; splits a pattern without changing what is seen
_ALWAYS = frozenset("\\`*[]<>&~$|#")
_UNDERSCORES = re.compile(r"_+")
_SHORTCODE = re.compile(r":(?=([\w+\-/]+)([:\[]))")  # overlapping: ":a:b:" opens at both of its first colons
_LINE_START = re.compile(r"^[ \t]*([-+=]|\d{1,9}[.)](?=\s|$))", re.MULTILINE)
_JOIN_AFTER = re.compile(r"(?i):(?=//)|\bwww(?=\.)|@|:(?=material_\w+:|streamlit:)")


def md(text: object) -> str:
    """`text` (str() of anything) as Streamlit Markdown that shows exactly these characters."""
    text = str(text)
    escaped = {i for i, c in enumerate(text) if c in _ALWAYS}
    for m in _UNDERSCORES.finditer(text):  # a run between two letters or digits never opens emphasis
        if not (m.start() > 0 and m.end() < len(text) and text[m.start() - 1].isalnum() and text[m.end()].isalnum()):
            escaped |= set(range(m.start(), m.end()))
    for m in _SHORTCODE.finditer(text):
        escaped |= {m.start() + 1 + j for j, c in enumerate(m.group(1)) if c == "/"}
        escaped |= {m.start(), m.end(1)} if m.group(2) == ":" else {m.start()}
    escaped |= {m.end(1) - 1 for m in _LINE_START.finditer(text)}  # "-", "+", "=", or the "." / ")" of "1."
    joined = {m.end() - 1 for m in _JOIN_AFTER.finditer(text)}
    return "".join(("\\" + c if i in escaped else c) + (JOINER if i in joined else "") for i, c in enumerate(text))
