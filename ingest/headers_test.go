package ingest

import (
	"bufio"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestBearerOrBasic(t *testing.T) {
	const tok = "hgh_0123456789abcdef"
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tt := range []struct {
		name, header string
		token        string // "" with present: a header that cannot hold a token
		present      bool
	}{
		{"bearer", "Bearer " + tok, tok, true},
		{"bearer, any case", "bEARER " + tok, tok, true},
		{"bearer, tab", "Bearer\t" + tok, tok, true},
		{"bearer, spaces and tabs around", " \tBearer  \t" + tok + " \t", tok, true},
		{"bearer, no-break space after the token stays in it", "Bearer " + tok + "\u00a0", tok + "\u00a0", true},
		{"bearer, no-break space as separator", "Bearer\u00a0" + tok, "", true},
		{"bearer alone", "Bearer", "", false},
		{"bearer and blanks", "Bearer \t ", "", false},
		{"basic", "Basic " + b64("user:"+tok), tok, true},
		{"basic, empty password", "Basic " + b64("user:"), "", false},
		{"basic, no colon", "Basic " + b64("user"), "", true},
		{"basic, bad base64", "Basic !!!", "", true},
		{"basic alone", "Basic", "", false},
		{"other scheme", "Token " + tok, "", true},
		{"scheme glued to the token", "Bearer" + tok, "", true},
		{"empty", "", "", false},
		{"blanks", " \t", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var scratch [512]byte
			got, present := bearerOrBasic([]byte(tt.header), scratch[:])
			if string(got) != tt.token || present != tt.present {
				t.Fatalf("bearerOrBasic(%q) = %q, %v; want %q, %v", tt.header, got, present, tt.token, tt.present)
			}
		})
	}
}

// Headers given twice are counted, whatever their case, so that neither is
// guessed at.
func TestReadHeadersCountsRepeats(t *testing.T) {
	raw := "POST /v1/hits/web HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer a\r\nauthorization: Bearer b\r\n" +
		"Idempotency-Key: k1\r\nContent-Length: 2\r\n\r\n{}"
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	var h requestHeaders
	readHeaders(&req.Header, &h)
	if h.authN != 2 || h.idemN != 1 || string(h.idem) != "k1" {
		t.Fatalf("read %+v; want two Authorization and one Idempotency-Key k1", h)
	}
}
