"""Text from files, models and users, shown as text: `md` escapes what Streamlit's Markdown would interpret.

Streamlit renders Markdown in st.markdown/st.write/st.caption, the alerts (st.error, st.warning, st.info,
st.success), st.toast, and in the labels of widgets, expanders, metrics and radio options. Its renderer escapes
raw HTML, but it still draws images — `![x](http://host/x.png)` makes the browser fetch from that host — as
well as links, LaTeX (`$…$`), emoji shortcodes (`:smile:`), Material icons (`:material/home:`), coloured text
(`:red[…]`), emphasis, headings, lists, tables and footnotes. A layer name, a config key, a Hugging Face
config field or an error message quoting any of these must reach the page as the characters it holds.

`md` backslash-escapes (CommonMark: any ASCII punctuation may be escaped, and then shows as itself):
- everywhere: the characters that open inline syntax — \\ ` * [ ] < > & ~ $ | # — so no image, link,
  autolink in <…>, code span, emphasis, strikethrough, math, table or heading can form;
- `_` except inside a word (`patch_embed`), where CommonMark never reads it as emphasis;
- both colons of a shortcode, icon or colour (`:name:`, `:material/x:`, `:red[`): Streamlit looks for these in
  the source before parsing, and an escaped closing colon is what stops it (`\\:smile:` still shows 😄);
- a line's leading `-`, `+`, `=` or `1.`/`1)`, which would start a list or underline a heading.
Everything else (`layer1.0`, `digits_cnn.py:build`, `it has: fc1, fc2`) is left as written, so messages read
the same in the source. Bare URLs (`http://…`, `www.…`) stay clickable links: GitHub-flavoured Markdown finds
them in the text after parsing, where no escape reaches; a link is only followed on a click, nothing is fetched.

Where a value reads better verbatim (a path, a command), show it with st.code or st.text instead: they draw
no Markdown at all.
"""

from __future__ import annotations

import re

_ALWAYS = frozenset("\\`*[]<>&~$|#@")
_UNDERSCORES = re.compile(r"_+")
_SHORTCODE = re.compile(r":(?=([\w+\-/]+)([:\[]))")  # overlapping: ":a:b:" opens at both of its first colons
_BARE_LINK = re.compile(r"(?i)(:)//|\bwww(\.)")  # "http://…", "www.…": GFM would read them as one raw token
_ICON = re.compile(r"(?<=:)(?=material_\w+\\?:|streamlit\\?:)")  # replaced in the parsed text, where escapes are gone
JOINER = "\u2060"  # WORD JOINER: invisible, splits ":material_home:" so it stays text
_LINE_START = re.compile(r"^[ \t]*([-+=]|\d{1,9}[.)](?=\s|$))", re.MULTILINE)


def md(text: object) -> str:
    """`text` (str() of anything) as Streamlit Markdown that shows exactly these characters."""
    text = str(text)
    marked = {i for i, c in enumerate(text) if c in _ALWAYS}
    for m in _UNDERSCORES.finditer(text):  # a run between two letters or digits never opens emphasis
        if not (m.start() > 0 and m.end() < len(text) and text[m.start() - 1].isalnum() and text[m.end()].isalnum()):
            marked |= set(range(m.start(), m.end()))
    for m in _SHORTCODE.finditer(text):
        marked |= {m.start() + 1 + j for j, c in enumerate(m.group(1)) if c == "/"}  # Streamlit reads ":material/"
        marked |= {m.start(), m.end(1)} if m.group(2) == ":" else {m.start()}
    marked |= {m.start(1) if m.group(1) else m.start(2) for m in _BARE_LINK.finditer(text)}
    marked |= {m.end(1) - 1 for m in _LINE_START.finditer(text)}  # "-", "+", "=", or the "." / ")" of "1."
    escaped = "".join("\\" + c if i in marked else c for i, c in enumerate(text))
    return _ICON.sub(JOINER, escaped)

