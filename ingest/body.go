package ingest

import (
	"errors"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/hookgate/hookgate/auth"
)

// Body errors; their text reaches the sender in the reply's message.
var (
	errBodyEmpty    = errors.New("body is empty")
	errBodyNotJSON  = errors.New("body is not valid JSON")
	errBodyNotObj   = errors.New("body must be a JSON object")
	errBodyNotBatch = errors.New("body must be a JSON object or a non-empty array of objects")
	errBodyTooDeep  = errors.New("body nests JSON deeper than 256 levels")
	errBodyNotUTF8  = errors.New("body is not valid UTF-8 (JSON text is UTF-8)")
)

// maxDepth bounds nesting: a validator recursing once per level would
// otherwise let a 256 KiB body of brackets cost megabytes of stack.
const maxDepth = 256

// ValidateBody checks a webhook body: JSON, and for hits an object or a
// non-empty array of objects, for deploys an object. It builds no values and
// does not allocate for a valid body. It is exported for whatever else must
// judge a payload as the gateway does (its benchmarks, a tool replaying
// webhooks).
func ValidateBody(kind auth.Kind, body []byte) error {
	i := skipSpace(body, 0)
	if i == len(body) {
		return errBodyEmpty
	}
	if err := checkStructure(body[i:]); err != nil {
		return err
	}
	// fastjson takes any bytes inside strings; a strict consumer of the
	// stream (RFC 8259 says JSON is UTF-8) would fail on them.
	if !utf8.Valid(body) {
		return errBodyNotUTF8
	}
	if fastjson.ValidateBytes(body) != nil {
		return errBodyNotJSON
	}
	switch body[i] {
	case '{':
		return nil
	case '[':
		if kind == auth.KindHits && arrayOfObjects(body, i) {
			return nil
		}
	}
	if kind == auth.KindHits {
		return errBodyNotBatch
	}
	return errBodyNotObj
}

// arrayOfObjects reports whether the array opening at body[i] holds at least
// one element and only objects. body is known to be valid JSON, so only the
// first byte of each top-level element needs looking at.
func arrayOfObjects(body []byte, i int) bool {
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == ']' {
		return false
	}
	depth := 0
	expectElem := true
	for ; i < len(body); i++ {
		c := body[i]
		if expectElem {
			if isSpace(c) {
				continue
			}
			if c != '{' {
				return false
			}
			expectElem = false
		}
		switch c {
		case '"':
			i = skipString(body, i)
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return true // the array's own ']'
			}
		case ',':
			if depth == 0 {
				expectElem = true
			}
		}
	}
	return false
}

// checkStructure checks what fastjson's validation does not: nesting depth,
// and raw control characters inside strings (fastjson 1.6.10 lets one through
// when an escape follows it in the same string; found by FuzzValidateBody). It
// runs before validation, on bytes that may not be JSON at all.
func checkStructure(body []byte) error {
	depth := 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"':
			end, ok := scanString(body, i)
			if !ok {
				return errBodyNotJSON
			}
			i = end
		case '{', '[':
			if depth++; depth > maxDepth {
				return errBodyTooDeep
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// scanString returns the index of the quote closing the string opening at
// body[i]; ok is false when the string holds a raw control character.
func scanString(body []byte, i int) (end int, ok bool) {
	for i++; i < len(body); i++ {
		switch c := body[i]; {
		case c == '\\':
			i++
		case c == '"':
			return i, true
		case c < 0x20:
			return i, false
		}
	}
	return i, true
}

// skipString returns the index of the quote closing the string opening at
// body[i], for a body already known to be valid JSON.
func skipString(body []byte, i int) int {
	end, _ := scanString(body, i)
	return end
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
