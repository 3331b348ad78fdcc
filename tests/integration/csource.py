"""C source text for the tests that read names from the sources rather than from a running
daemon (test_docs_names.py, test_log_number_keys.py): comments blanked, string literals
joined as the compiler joins them, the arguments of a call."""
import bisect
import re

TOKENS = re.compile(r'/\*.*?(?:\*/|\Z)|//[^\n]*|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'', re.S)


def blank_comments(text):
    """text with C comments replaced by blanks (line breaks kept), string and character
    literals untouched."""
    return TOKENS.sub(lambda m: re.sub(r'[^\n]', ' ', m.group(0)) if m.group(0)[0] == '/' else m.group(0), text)


_newlines = {}


def lineno(code, pos):
    """The line (from 1) of offset pos in code."""
    nl = _newlines.get(id(code))
    if nl is None or nl[0] is not code:
        nl = _newlines[id(code)] = (code, [i for i, c in enumerate(code) if c == '\n'])
    return bisect.bisect_right(nl[1], pos - 1) + 1


LIT = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def literals(code):
    """[(line, text)] of the string literals of code (comments blanked), adjacent ones
    joined as the compiler joins them."""
    out, last_end = [], -1
    for m in LIT.finditer(code):
        if out and code[last_end:m.start()].strip() == '':
            out[-1] = (out[-1][0], out[-1][1] + m.group(1))
        else:
            out.append((lineno(code, m.start()), m.group(1)))
        last_end = m.end()
    return out


def call_args(code, fname):
    """For each call of fname( in code: its top-level arguments, as text."""
    for m in re.finditer(r'(?<![\w.])' + re.escape(fname) + r'\s*\(', code):
        i, depth, args, cur = m.end(), 1, [], []
        while i < len(code) and depth:
            c = code[i]
            if c in '"\'':
                j = i + 1
                while j < len(code) and code[j] != c:
                    j += 2 if code[j] == '\\' else 1
                cur.append(code[i:j + 1])
                i = j + 1
                continue
            if c in '([{':
                depth += 1
            elif c in ')]}':
                depth -= 1
            if depth == 1 and c == ',':
                args.append(''.join(cur).strip())
                cur = []
            elif depth:
                cur.append(c)
            i += 1
        args.append(''.join(cur).strip())
        yield lineno(code, m.start()), args


def lit_value(arg):
    """The value of an argument made only of string literals, else None."""
    if not re.fullmatch(r'\s*(?:"(?:[^"\\]|\\.)*"\s*)+', arg):
        return None
    return ''.join(LIT.findall(arg))
