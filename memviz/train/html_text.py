"""HTML documentation as plain text for a training corpus (the standard library's html.parser).

Block elements start a new line, `<pre>` keeps its layout, scripts, styles and navigation bars
(`<nav>`, DocBook's `navheader`/`navfooter`, sqlite.org's `nosearch` menus) are dropped: the text a
reader reads, not the page's furniture.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "pre", "blockquote",
    "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "hr", "title", "caption", "figure",
}  # fmt: skip
_SKIP = {"script", "style", "nav", "noscript", "svg", "head"}
_SKIP_CLASSES = {"navheader", "navfooter", "nosearch", "menu", "toc"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "wbr", "source"}
_SPACES = re.compile(r"[ \t\r\f\v\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip: list[str] = []  # the open tags inside a skipped element (its own first)
        self._pre = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if self._skip:
            if tag not in _VOID:
                self._skip.append(tag)
            return
        classes = set((dict(attrs).get("class") or "").split())
        if tag in _SKIP or (tag == "div" and classes & _SKIP_CLASSES):
            if tag not in _VOID:
                self._skip.append(tag)
            return
        if tag == "pre":
            self._pre += 1
        if tag in _BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            # close up to the matching open tag (HTML leaves some unclosed)
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if tag == "pre" and self._pre:
            self._pre -= 1
        if tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self.out.append(data)
            return
        data = _SPACES.sub(" ", data)
        if not self.out or self.out[-1].endswith("\n"):  # a line's start: no indent outside <pre>
            data = data.lstrip(" ")
        if data:
            self.out.append(data)


def html_to_text(html: str) -> str:
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = (line.rstrip() for line in "".join(parser.out).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"
