package signature

import (
	"bytes"

	"github.com/hookgate/hookgate/internal/ascii"
)

const (
	mediaForm    = "application/x-www-form-urlencoded"
	payloadField = "payload"
)

// FormPayload returns the JSON of GitHub's form content type: when
// contentType is application/x-www-form-urlencoded (parameters allowed) and
// the body is the one field payload, its decoded value appended to dst. ok
// is false for any other content type or body: another field, a second
// field, a field without "=", or a bad % escape. Only rows whose FormBody is
// true may be read so; the signature is still verified over the raw body.
func FormPayload(dst, contentType, body []byte) (payload []byte, ok bool) {
	if i := bytes.IndexByte(contentType, ';'); i >= 0 {
		contentType = contentType[:i]
	}
	if !ascii.EqualFold(ascii.TrimBlank(contentType), mediaForm) {
		return dst, false
	}
	name, value, found := bytes.Cut(body, []byte{'='})
	if !found || bytes.IndexByte(value, '&') >= 0 || !formNameIs(name, payloadField) {
		return dst, false
	}
	n := len(dst)
	out, ok := formUnescape(dst, value)
	if !ok {
		return dst[:n], false
	}
	return out, true
}

// formNameIs reports whether the escaped field name decodes to want.
func formNameIs(name []byte, want string) bool {
	for i := 0; i < len(want); i++ {
		if len(name) == 0 {
			return false
		}
		c, rest, ok := formByte(name)
		if !ok || c != want[i] {
			return false
		}
		name = rest
	}
	return len(name) == 0
}

// formUnescape appends the decoding of an application/x-www-form-urlencoded
// value: + is a space, %XX a byte; a % without two hex digits fails.
func formUnescape(dst, src []byte) ([]byte, bool) {
	for len(src) > 0 {
		// Copy the run of plain bytes at once.
		i := bytes.IndexAny(src, "+%")
		if i < 0 {
			return append(dst, src...), true
		}
		dst = append(dst, src[:i]...)
		c, rest, ok := formByte(src[i:])
		if !ok {
			return dst, false
		}
		dst = append(dst, c)
		src = rest
	}
	return dst, true
}

// formByte decodes the first byte of a form-encoded string.
func formByte(s []byte) (c byte, rest []byte, ok bool) {
	switch s[0] {
	case '+':
		return ' ', s[1:], true
	case '%':
		if len(s) < 3 {
			return 0, nil, false
		}
		hi, ok1 := unhex(s[1])
		lo, ok2 := unhex(s[2])
		if !ok1 || !ok2 {
			return 0, nil, false
		}
		return hi<<4 | lo, s[3:], true
	}
	return s[0], s[1:], true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
