package signature_test

import (
	"fmt"
	"time"

	"github.com/hookgate/hookgate/signature"
)

// A handler gathers the headers in its one pass over the request, finds the
// row, and verifies with the Key that its credential cache entry holds.
func Example() {
	// Made once, when the credential's secret is unsealed.
	key, err := signature.NewKey([]byte("It's a Secret to Everybody"))
	if err != nil {
		panic(err)
	}

	// For each request: with fasthttp, for k, v := range ctx.Request.Header.All() { h.Add(k, v) }.
	var h signature.Headers
	h.Add([]byte("X-GitHub-Event"), []byte("push"))
	h.Add([]byte("X-GitHub-Delivery"), []byte("72d3162e-cc78-11e3-81ab-4c9367dc0958"))
	h.Add([]byte("X-Hub-Signature-256"), []byte("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"))

	s := signature.Detect(&h)
	err = key.Verify(s, &h, []byte("Hello, World!"), time.Now())
	fmt.Println(s.HookAuth(), err, string(h.Event()), string(h.SenderID()))

	err = key.Verify(s, &h, []byte("Hello, World?"), time.Now())
	fmt.Println(err)
	// Output:
	// hub-signature <nil> push 72d3162e-cc78-11e3-81ab-4c9367dc0958
	// signature: invalid signature: no signature matches the body and secret
}
