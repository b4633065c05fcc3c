#!/usr/bin/env python3
"""Turns a terminal screen captured with `tmux capture-pane -e -p` into a standalone HTML page
(one <pre>, a span per run of cells with the same style), for a screenshot in a headless
browser: `chromium --headless --screenshot=out.png --window-size=W,H page.html`.

Usage: ansi_html.py SCREEN.ansi > page.html

Understands the SGR codes tmux writes: reset, bold, dim, italic, underline, reverse, the 8/16
colours, 256-colour (38;5;N / 48;5;N) and RGB (38;2;R;G;B / 48;2;R;G;B) foreground and
background. Other escape sequences are dropped.
"""
import html
import re
import sys

# xterm's default palette for the 16 named colours.
BASE16 = [
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205), (0, 205, 205),
    (229, 229, 229), (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0), (92, 92, 255),
    (255, 0, 255), (0, 255, 255), (255, 255, 255),
]
FG, BG = (229, 229, 229), (24, 24, 24)


def color256(n):
    if n < 16:
        return BASE16[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + (n - 232) * 10
    return (v, v, v)


class Style:
    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = self.bg = None
        self.bold = self.dim = self.italic = self.underline = self.reverse = False

    def key(self):
        return (self.fg, self.bg, self.bold, self.dim, self.italic, self.underline, self.reverse)

    def apply(self, params):
        p = [int(x) if x else 0 for x in params.split(';')] if params else [0]
        i = 0
        while i < len(p):
            c = p[i]
            if c == 0:
                self.reset()
            elif c == 1:
                self.bold = True
            elif c == 2:
                self.dim = True
            elif c == 3:
                self.italic = True
            elif c == 4:
                self.underline = True
            elif c == 7:
                self.reverse = True
            elif c == 22:
                self.bold = self.dim = False
            elif c == 23:
                self.italic = False
            elif c == 24:
                self.underline = False
            elif c == 27:
                self.reverse = False
            elif 30 <= c <= 37:
                self.fg = BASE16[c - 30]
            elif c == 39:
                self.fg = None
            elif 40 <= c <= 47:
                self.bg = BASE16[c - 40]
            elif c == 49:
                self.bg = None
            elif 90 <= c <= 97:
                self.fg = BASE16[c - 90 + 8]
            elif 100 <= c <= 107:
                self.bg = BASE16[c - 100 + 8]
            elif c in (38, 48) and i + 1 < len(p):
                if p[i + 1] == 5 and i + 2 < len(p):
                    rgb = color256(p[i + 2])
                    i += 2
                elif p[i + 1] == 2 and i + 4 < len(p):
                    rgb = tuple(p[i + 2:i + 5])
                    i += 4
                else:
                    rgb = None
                if c == 38:
                    self.fg = rgb
                else:
                    self.bg = rgb
            i += 1

    def css(self):
        fg, bg = self.fg or FG, self.bg or BG
        if self.reverse:
            fg, bg = bg, fg
        if self.dim:
            fg = tuple((a + b) // 2 for a, b in zip(fg, bg))
        out = []
        if fg != FG:
            out.append('color:#%02x%02x%02x' % fg)
        if bg != BG:
            out.append('background:#%02x%02x%02x' % bg)
        if self.bold:
            out.append('font-weight:bold')
        if self.italic:
            out.append('font-style:italic')
        if self.underline:
            out.append('text-decoration:underline')
        return ';'.join(out)


TOKEN = re.compile(r'\x1b\[([0-9;]*)([A-Za-z])|\x1b[()][A-Za-z0-9]|\x1b.|([^\x1b]+)')


def convert(text):
    style = Style()
    lines = []
    for raw in text.rstrip('\n').split('\n'):
        spans = []
        for m in TOKEN.finditer(raw):
            if m.group(3) is not None:
                spans.append((style.css(), m.group(3)))
            elif m.group(2) == 'm':
                style.apply(m.group(1))
        out = []
        for css, s in spans:
            # Braille comes from a fallback font whose advance is not the cell's: pin it.
            s = re.sub('([\u2800-\u28ff]+)',
                       lambda m: ''.join('<i>%s</i>' % c for c in m.group(1)), html.escape(s))
            out.append('<span style="%s">%s</span>' % (css, s) if css else s)
        lines.append(''.join(out))
        # tmux ends each line's styles itself; colours do not run into the next line
        style.reset()
    return '\n'.join(lines)


def main():
    text = open(sys.argv[1], encoding='utf-8', errors='replace').read()
    print('<!doctype html><html><head><meta charset="utf-8"><style>'
          'body{margin:0;background:#%02x%02x%02x}' % BG +
          'pre{margin:0;padding:8px;font:14px/17px "DejaVu Sans Mono",monospace;'
          'color:#%02x%02x%02x}' % FG +
          'i{font-style:normal;display:inline-block;width:1ch;overflow:hidden;vertical-align:top}' +
          '</style></head><body><pre>%s</pre></body></html>' % convert(text))


if __name__ == '__main__':
    main()
