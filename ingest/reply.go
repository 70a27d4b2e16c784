package ingest

import (
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"
)

// refusal is one row of the contract's error table: what the sender sees.
type refusal struct {
	status int
	code   string
	body   []byte // {"error": code, "message": ...}, built once
}

func newRefusal(status int, code, message string) *refusal {
	body := `{"error":` + strconv.Quote(code) + `,"message":` + strconv.Quote(message) + "}"
	return &refusal{status: status, code: code, body: []byte(body)}
}

// The contract's error table.
var (
	refusalNotFound        = newRefusal(http.StatusNotFound, "not_found", "no such route; webhooks go to POST /v1/hits/{app} or POST /v1/deploys/{app}")
	refusalMethod          = newRefusal(http.StatusMethodNotAllowed, "method_not_allowed", "webhooks are sent with POST")
	refusalMissingToken    = newRefusal(http.StatusUnauthorized, "missing_token", "send the token as 'Authorization: Bearer TOKEN' or as the Basic auth password")
	refusalInvalidToken    = newRefusal(http.StatusUnauthorized, "invalid_token", "the token is not valid: unknown, expired, rotated or revoked")
	refusalSignature       = newRefusal(http.StatusUnauthorized, "invalid_signature", "the signature, its timestamp or the credential named by ?credential= does not verify")
	refusalRateLimited     = newRefusal(http.StatusTooManyRequests, "rate_limited", "too many requests; retry after the time in Retry-After")
	refusalInvalidApp      = newRefusal(http.StatusBadRequest, "invalid_app", "the application name must match ^[a-z0-9][a-z0-9_-]{0,62}$")
	refusalForbiddenKind   = newRefusal(http.StatusForbidden, "forbidden", "this token may not post this kind of webhook")
	refusalForbiddenApp    = newRefusal(http.StatusForbidden, "forbidden", "this token is limited to another application")
	refusalMediaType       = newRefusal(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
	refusalIdempotencyKey  = newRefusal(http.StatusBadRequest, "invalid_idempotency_key", "Idempotency-Key must be given once, 1 to 200 visible ASCII characters")
	refusalPayloadTooLarge = newRefusal(http.StatusRequestEntityTooLarge, "payload_too_large", "the body is larger than the gateway accepts")
	refusalUnavailable     = newRefusal(http.StatusServiceUnavailable, "unavailable", "the webhook could not be stored now; retry with the same Idempotency-Key")
	refusalBusy            = newRefusal(http.StatusServiceUnavailable, "unavailable", "the gateway is at its concurrency limit; retry later")
	refusalBadRequest      = newRefusal(http.StatusBadRequest, "bad_request", "the request is not valid HTTP")
	refusalHeadersTooLarge = newRefusal(http.StatusRequestHeaderFieldsTooLarge, "headers_too_large", "the request headers are too large")
	refusalRequestTimeout  = newRefusal(http.StatusRequestTimeout, "request_timeout", "the request was not received in time")
	bodyRefusals           = map[error]*refusal{}
	wwwAuthenticate        = []byte(`Bearer realm="hookgate"`)
	contentTypeJSON        = []byte("application/json")
	headerAllow            = []byte("Allow")
	headerRetryAfter       = []byte("Retry-After")
	headerWWWAuth          = []byte("WWW-Authenticate")
	valuePOST              = []byte("POST")
	retryAfterOneSecond    = []byte("1")
)

func init() {
	for _, err := range []error{errBodyEmpty, errBodyNotJSON, errBodyNotObj, errBodyNotBatch, errBodyTooDeep, errBodyNotUTF8} {
		bodyRefusals[err] = newRefusal(http.StatusBadRequest, "invalid_body", err.Error())
	}
}

// write sends the refusal; retryAfter > 0 adds Retry-After in whole seconds.
func (r *refusal) write(ctx *fasthttp.RequestCtx, retryAfterSeconds int) {
	ctx.SetStatusCode(r.status)
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	switch r.status {
	case http.StatusUnauthorized:
		ctx.Response.Header.SetBytesKV(headerWWWAuth, wwwAuthenticate)
	case http.StatusMethodNotAllowed:
		ctx.Response.Header.SetBytesKV(headerAllow, valuePOST)
	}
	if retryAfterSeconds > 0 {
		if retryAfterSeconds == 1 {
			ctx.Response.Header.SetBytesKV(headerRetryAfter, retryAfterOneSecond)
		} else {
			ctx.Response.Header.SetBytesK(headerRetryAfter, strconv.Itoa(retryAfterSeconds))
		}
	}
	ctx.SetBody(r.body)
}
