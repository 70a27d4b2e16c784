// Package ascii compares and trims header bytes by ASCII rules only: HTTP
// header names and the schemes and separators in their values are ASCII, and
// Unicode folding or spaces must not make two different bytes alike (the
// Kelvin sign is not a "k"; a no-break space is not a separator).
package ascii

// EqualFold reports whether s equals lower, a lowercase ASCII word,
// ignoring ASCII case.
func EqualFold(s []byte, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// TrimBlank trims ASCII spaces and tabs, and nothing else.
func TrimBlank(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
