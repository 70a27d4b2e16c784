package signature

// The Hook-Auth values of signed requests: the first column of the
// contract's table, stored with each message that a signature authenticated.
const (
	HubSignature     = "hub-signature"
	StandardWebhooks = "standard-webhooks"
	Flux             = "flux"
	CircleCI         = "circleci"
	PagerDuty        = "pagerduty"
	Sentry           = "sentry"
)

// signedBytes says what a scheme's HMAC is computed over.
type signedBytes uint8

const (
	rawBody         signedBytes = iota // the raw body
	idTimestampBody                    // <id>.<timestamp>.<raw body> (Standard Webhooks)
)

// keyBytes says which bytes of the signing secret S are the HMAC key.
type keyBytes uint8

const (
	secretBytes  keyBytes = iota // the bytes of S
	whsecDecoded                 // the base64-decoded part of S after whsec_, or the bytes of S without that prefix
)

// sigEncoding is how one signature is written after its prefix.
type sigEncoding uint8

const (
	hexEncoded    sigEncoding = iota // lowercase or uppercase hex of the 32 bytes
	base64Encoded                    // standard base64 with padding, canonical
)

// headerSet names the headers that present one signature: the signature
// header and, for Standard Webhooks, the id and timestamp headers beside it.
type headerSet struct {
	sig, id, timestamp field
}

// Scheme is one row of the contract's table of senders that sign: where the
// signature is, how it is written, what it is computed over, and with which
// key. The rows are fixed; a *Scheme always points into the table.
type Scheme struct {
	hookAuth string // the table's first column
	sender   string // who sends it
	header   string // the signature header, as the contract spells it

	// sets are the headers that carry this row's signature, in the order
	// they are checked: Standard Webhooks has the webhook- and svix- ones.
	sets    []headerSet
	prefix  string // what each signature starts with
	refused string // a signature prefix that is refused outright (Bitbucket's sha1=)
	sep     byte   // separator of a list of signatures, any one matching; 0 for one signature
	enc     sigEncoding
	signed  signedBytes
	key     keyBytes
	form    bool // a form body with one field payload may carry the JSON (GitHub)
}

// The contract's table of senders that sign, in its order, which is also the
// order of precedence when a request carries several signature headers.
var schemes = [...]Scheme{
	{
		hookAuth: HubSignature, sender: "GitHub, Gitea, Forgejo", header: "X-Hub-Signature-256",
		sets:   []headerSet{{sig: fHubSignature256}},
		prefix: "sha256=", enc: hexEncoded, signed: rawBody, key: secretBytes, form: true,
	},
	{
		hookAuth: HubSignature, sender: "Bitbucket Cloud", header: "X-Hub-Signature",
		sets:   []headerSet{{sig: fHubSignature}},
		prefix: "sha256=", refused: "sha1=", enc: hexEncoded, signed: rawBody, key: secretBytes, form: true,
	},
	{
		hookAuth: StandardWebhooks, sender: "Standard Webhooks senders (GitLab's signing token, Svix and others)",
		header: "webhook-signature",
		sets: []headerSet{
			{sig: fWebhookSignature, id: fWebhookID, timestamp: fWebhookTimestamp},
			{sig: fSvixSignature, id: fSvixID, timestamp: fSvixTimestamp},
		},
		prefix: "v1,", sep: ' ', enc: base64Encoded, signed: idTimestampBody, key: whsecDecoded,
	},
	{
		hookAuth: Flux, sender: "Flux generic-hmac", header: "X-Signature",
		sets:   []headerSet{{sig: fXSignature}},
		prefix: "sha256=", enc: hexEncoded, signed: rawBody, key: secretBytes,
	},
	{
		hookAuth: CircleCI, sender: "CircleCI", header: "circleci-signature",
		sets:   []headerSet{{sig: fCircleCISignature}},
		prefix: "v1=", sep: ',', enc: hexEncoded, signed: rawBody, key: secretBytes,
	},
	{
		hookAuth: PagerDuty, sender: "PagerDuty v3", header: "X-PagerDuty-Signature",
		sets:   []headerSet{{sig: fPagerDutySignature}},
		prefix: "v1=", sep: ',', enc: hexEncoded, signed: rawBody, key: secretBytes,
	},
	{
		hookAuth: Sentry, sender: "Sentry", header: "Sentry-Hook-Signature",
		sets:   []headerSet{{sig: fSentryHookSignature}},
		prefix: "", enc: hexEncoded, signed: rawBody, key: secretBytes,
	},
}

// Schemes returns the table's rows in the contract's order.
func Schemes() []*Scheme {
	rows := make([]*Scheme, len(schemes))
	for i := range schemes {
		rows[i] = &schemes[i]
	}
	return rows
}

// HookAuth is the row's Hook-Auth value, such as "hub-signature".
func (s *Scheme) HookAuth() string { return s.hookAuth }

// Sender says who signs this way, as the contract's table does.
func (s *Scheme) Sender() string { return s.sender }

// Header is the row's signature header, as the contract spells it (Standard
// Webhooks also accepts the svix- one).
func (s *Scheme) Header() string { return s.header }

// FormBody reports whether a request of this row may carry its JSON as the
// one field payload of an application/x-www-form-urlencoded body (GitHub's
// form content type; see FormPayload).
func (s *Scheme) FormBody() bool { return s.form }

// Detect returns the row whose signature header comes first in the table's
// order among those the request carries, or nil when it carries none. A
// header given twice still selects its row, and Verify then fails.
func Detect(h *Headers) *Scheme {
	for i := range schemes {
		if schemes[i].presented(h) != nil {
			return &schemes[i]
		}
	}
	return nil
}

// presented returns the first of the row's header sets whose signature header
// the request carries.
func (s *Scheme) presented(h *Headers) *headerSet {
	for i := range s.sets {
		if h.n[s.sets[i].sig] > 0 {
			return &s.sets[i]
		}
	}
	return nil
}
