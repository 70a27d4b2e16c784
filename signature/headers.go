package signature

import "github.com/hookgate/hookgate/internal/ascii"

// field is a request header that this package reads; 0 is none.
type field uint8

const (
	fNone field = iota
	fHubSignature256
	fHubSignature
	fWebhookID
	fWebhookTimestamp
	fWebhookSignature
	fSvixID
	fSvixTimestamp
	fSvixSignature
	fXSignature
	fCircleCISignature
	fPagerDutySignature
	fSentryHookSignature
	fGitHubDelivery
	fGitHubEvent
	fGitlabEvent
	fGiteaEvent
	fEventKey
	fCircleCIEventType
	fSentryHookResource
	numFields
)

// fieldNames are the headers' names in lowercase.
var fieldNames = [numFields]string{
	fHubSignature256:     "x-hub-signature-256",
	fHubSignature:        "x-hub-signature",
	fWebhookID:           "webhook-id",
	fWebhookTimestamp:    "webhook-timestamp",
	fWebhookSignature:    "webhook-signature",
	fSvixID:              "svix-id",
	fSvixTimestamp:       "svix-timestamp",
	fSvixSignature:       "svix-signature",
	fXSignature:          "x-signature",
	fCircleCISignature:   "circleci-signature",
	fPagerDutySignature:  "x-pagerduty-signature",
	fSentryHookSignature: "sentry-hook-signature",
	fGitHubDelivery:      "x-github-delivery",
	fGitHubEvent:         "x-github-event",
	fGitlabEvent:         "x-gitlab-event",
	fGiteaEvent:          "x-gitea-event",
	fEventKey:            "x-event-key",
	fCircleCIEventType:   "circleci-event-type",
	fSentryHookResource:  "sentry-hook-resource",
}

const maxNameLen = len("x-pagerduty-signature")

// byLen lists the fields by the length of their names, so that Add compares
// a request header with two or three names at most.
var byLen [maxNameLen + 1][]field

func init() {
	for f := fNone + 1; f < numFields; f++ {
		n := len(fieldNames[f])
		byLen[n] = append(byLen[n], f)
	}
}

// senderIDs and eventHeaders are the contract's lists, in its order: the
// first present is used.
var (
	senderIDs    = [...]field{fGitHubDelivery, fWebhookID, fSvixID}
	eventHeaders = [...]field{fGitHubEvent, fGitlabEvent, fGiteaEvent, fEventKey, fCircleCIEventType, fSentryHookResource}
)

// Headers holds the request headers that signatures, sender ids and events
// are read from, gathered by the caller in one pass over the request's
// headers (Add each one). A header given twice is counted, not guessed at.
// Its zero value is empty and ready; it holds the caller's slices, so with
// fasthttp it is good only while the handler runs.
type Headers struct {
	val [numFields][]byte // the last value of each header
	n   [numFields]uint8  // how many times it came: 0, 1, or 2 for more
}

// Add records one request header, matching its name in any ASCII case, and
// ignores headers that this package does not read.
func (h *Headers) Add(name, value []byte) {
	if len(name) > maxNameLen {
		return
	}
	for _, f := range byLen[len(name)] {
		if ascii.EqualFold(name, fieldNames[f]) {
			h.val[f] = value
			if h.n[f] < 2 {
				h.n[f]++
			}
			return
		}
	}
}

// Reset empties h for the next request.
func (h *Headers) Reset() { *h = Headers{} }

// SenderID returns the sender's id of the request, its idempotency key when
// it has no Idempotency-Key header: the first present of X-GitHub-Delivery,
// webhook-id, svix-id, when it is given once and is 1 to 200 visible ASCII
// characters; otherwise nil, and the webhook is stored without a key.
func (h *Headers) SenderID() []byte {
	for _, f := range senderIDs {
		if h.n[f] == 0 {
			continue
		}
		if v := h.val[f]; h.n[f] == 1 && visibleASCII(v, 200) {
			return v
		}
		return nil
	}
	return nil
}

// Event returns the value stored as header Hook-Event: the first present of
// X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event, X-Event-Key,
// Circleci-Event-Type, Sentry-Hook-Resource, when it is given once and is 1
// to 100 printable ASCII characters (0x20 to 0x7E); otherwise nil.
func (h *Headers) Event() []byte {
	for _, f := range eventHeaders {
		if h.n[f] == 0 {
			continue
		}
		if v := h.val[f]; h.n[f] == 1 && printableASCII(v, 100) {
			return v
		}
		return nil
	}
	return nil
}

// visibleASCII reports whether b is 1 to max characters from 0x21 to 0x7E.
func visibleASCII(b []byte, max int) bool {
	if len(b) == 0 || len(b) > max {
		return false
	}
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// printableASCII reports whether b is 1 to max characters from 0x20 to 0x7E.
func printableASCII(b []byte, max int) bool {
	if len(b) == 0 || len(b) > max {
		return false
	}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
