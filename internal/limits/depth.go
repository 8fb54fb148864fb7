package limits

import (
	"unicode"
	"unicode/utf8"

	hclscanner "github.com/hashicorp/hcl/hcl/scanner"
	hcltoken "github.com/hashicorp/hcl/hcl/token"
	hcljsonscanner "github.com/hashicorp/hcl/json/scanner"
	hcljsontoken "github.com/hashicorp/hcl/json/token"
)

// The depth scanners return the deepest nesting of objects and lists in src, counting
// only what the real parser would see as a brace or a bracket (not one inside a string,
// a comment or a heredoc), and the line where that depth was first reached. They stop
// as soon as the depth passes stop, so their work is bounded by the input, never by its
// nesting, and they do not recurse. On a syntax error they return the depth seen before
// it: the real parser stops there too, with its own error.

// DepthHCL scans HCL native syntax with the HCL scanner itself (the one hcl/parser
// uses, which reads strings with their escapes and ${} interpolations, the three
// comment forms and heredocs), so that it and the parser cannot disagree on what is a
// brace.
func DepthHCL(src []byte, stop int) (depth, line int) {
	defer func() {
		// The HCL scanner panics on some malformed input (an unread it cannot do); the
		// parser, fed the same bytes, fails at the same place.
		_ = recover()
	}()
	sc := hclscanner.New(src)
	failed := false
	sc.Error = func(hcltoken.Pos, string) { failed = true }
	cur := 0
	for {
		tok := sc.Scan()
		if failed || tok.Type == hcltoken.EOF || tok.Type == hcltoken.ILLEGAL {
			return depth, line
		}
		switch tok.Type {
		case hcltoken.LBRACE, hcltoken.LBRACK:
			cur++
			if cur > depth {
				depth, line = cur, tok.Pos.Line
				if depth > stop {
					return depth, line
				}
			}
		case hcltoken.RBRACE, hcltoken.RBRACK:
			if cur > 0 {
				cur--
			}
		}
	}
}

// DepthHCLJSON scans JSON as hcl.Parse reads it (with the HCL module's JSON scanner).
func DepthHCLJSON(src []byte, stop int) (depth, line int) {
	defer func() { _ = recover() }()
	sc := hcljsonscanner.New(src)
	failed := false
	sc.Error = func(hcljsontoken.Pos, string) { failed = true }
	cur := 0
	for {
		tok := sc.Scan()
		if failed || tok.Type == hcljsontoken.EOF || tok.Type == hcljsontoken.ILLEGAL {
			return depth, line
		}
		switch tok.Type {
		case hcljsontoken.LBRACE, hcljsontoken.LBRACK:
			cur++
			if cur > depth {
				depth, line = cur, tok.Pos.Line
				if depth > stop {
					return depth, line
				}
			}
		case hcljsontoken.RBRACE, hcljsontoken.RBRACK:
			if cur > 0 {
				cur--
			}
		}
	}
}

// isHCLJSON reports whether hcl.Parse reads src as JSON: its first non-space character
// is "{".
func isHCLJSON(src []byte) bool {
	for len(src) > 0 {
		r, n := utf8.DecodeRune(src)
		if !unicode.IsSpace(r) {
			return r == '{'
		}
		src = src[n:]
	}
	return false
}

// DepthJSON scans JSON (RFC 8259): outside strings, "{" and "[" open a level and "}"
// and "]" close one; a string runs from a quote to the next quote that no backslash
// escapes. That is exact for valid JSON; on invalid JSON encoding/json stops at the
// first error (and has its own cap of 10,000 levels).
func DepthJSON(src []byte, stop int) (depth, line int) {
	cur, ln := 0, 1
	inString, escaped := false, false
	for _, c := range src {
		if c == '\n' {
			ln++
		}
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			cur++
			if cur > depth {
				depth, line = cur, ln
				if depth > stop {
					return depth, line
				}
			}
		case '}', ']':
			if cur > 0 {
				cur--
			}
		}
	}
	return depth, line
}
