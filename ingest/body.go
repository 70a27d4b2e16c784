package ingest

import (
	"bytes"
	"errors"

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
)

// maxDepth bounds nesting: a validator recursing once per level would
// otherwise let a 256 KiB body of brackets cost megabytes of stack.
const maxDepth = 256

// ValidateBody checks a webhook body: JSON, and for hits an object or a
// non-empty array of objects, for deploys an object. It builds no values and
// does not allocate for a valid body.
func ValidateBody(kind auth.Kind, body []byte) error {
	i := skipSpace(body, 0)
	if i == len(body) {
		return errBodyEmpty
	}
	if tooDeep(body[i:]) {
		return errBodyTooDeep
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

// tooDeep reports whether brackets outside strings nest deeper than maxDepth.
// It runs before validation, on bytes that may not be JSON at all.
func tooDeep(body []byte) bool {
	depth := 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"':
			i = skipString(body, i)
		case '{', '[':
			if depth++; depth > maxDepth {
				return true
			}
		case '}', ']':
			depth--
		}
	}
	return false
}

// skipString returns the index of the quote closing the string opening at
// body[i] (len(body) when there is none). IndexByte finds quote candidates
// fast; a quote preceded by an odd run of backslashes is escaped.
func skipString(body []byte, i int) int {
	for j := i + 1; j < len(body); {
		// Most strings in webhooks are short: look at a few bytes by hand
		// before paying for IndexByte's call.
		q := -1
		for end := min(j+16, len(body)); j < end; j++ {
			if body[j] == '"' {
				q = j
				break
			}
		}
		if q < 0 {
			k := bytes.IndexByte(body[j:], '"')
			if k < 0 {
				return len(body)
			}
			q = j + k
		}
		n := 0
		for b := q - 1; b > i && body[b] == '\\'; b-- {
			n++
		}
		if n%2 == 0 {
			return q
		}
		j = q + 1
	}
	return len(body)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
