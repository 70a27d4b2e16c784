package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/secretring"
)

// natsClient are the flags of a command that talks to a running NATS.
type natsClient struct {
	NatsURL   string `name:"nats-url" default:"${default_nats_url}" help:"NATS server URL."`
	natsNames `set:"replicas_help=Replicas of the bucket if this command creates it."`
	natsAuth
}

// registry connects and returns the credentials registry, creating the bucket
// when missing as serve does; sealer seals signing secrets (nil: none). It
// first removes the grace periods that have ended (a failure there is a
// warning on stderr: the command goes on).
func (n natsClient) registry(e *env, sealer auth.Sealer) (*auth.Registry, *nats.Conn, error) {
	nc, err := n.dial(n.NatsURL, "hookgate-token")
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	kv, err := bus.EnsureBucket(e.ctx, js, n.TokensBucket, n.Replicas)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	reg := &auth.Registry{KV: kv, JS: js, Sealer: sealer}
	if _, err := reg.Sweep(e.ctx); err != nil {
		fmt.Fprintf(e.stderr, "hookgate: warning: %s\n", oneLine(err))
	}
	return reg, nc, nil
}

// keyRing is the --secret-keys flag of the token commands that seal.
type keyRing struct {
	SecretKeys string `name:"secret-keys" default:"${default_secret_keys}" help:"Key ring file that seals signing secrets in the bucket: serve's (on the embedded default, secret-keys in its --data-dir)."`
}

// load reads the ring; a missing file says where the ring comes from.
func (k keyRing) load() (*secretring.Ring, error) {
	r, err := secretring.Load(k.SecretKeys)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no key ring at %s to seal signing secrets with (serve creates it in its --data-dir on the embedded default; or set --secret-keys): %w", k.SecretKeys, err)
	}
	return r, err
}

// lazy is the ring read when first needed: rotate and rename seal only for
// a credential that has a signing secret, and need no ring otherwise.
func (k keyRing) lazy() *lazyRing { return &lazyRing{k: k} }

type lazyRing struct {
	k    keyRing
	once sync.Once
	ring *secretring.Ring
	err  error
}

var _ auth.Sealer = (*lazyRing)(nil)

func (l *lazyRing) get() (*secretring.Ring, error) {
	l.once.Do(func() { l.ring, l.err = l.k.load() })
	return l.ring, l.err
}

func (l *lazyRing) Seal(id string, secret []byte) (auth.SealedSecret, error) {
	r, err := l.get()
	if err != nil {
		return auth.SealedSecret{}, err
	}
	return r.Seal(id, secret)
}

func (l *lazyRing) Unseal(id string, s auth.SealedSecret) ([]byte, error) {
	r, err := l.get()
	if err != nil {
		return nil, err
	}
	return r.Unseal(id, s)
}

func (l *lazyRing) SealingKey() string {
	if r, err := l.get(); err == nil {
		return r.SealingKey()
	}
	return ""
}

type tokenCmd struct {
	Issue  tokenIssueCmd  `cmd:"" help:"Create a credential and print its token once, with a ready-to-run curl command."`
	Rotate tokenRotateCmd `cmd:"" help:"Issue a new token (and signing secret, if it has one) for credential ID; the old ones stop working at once, or after --grace."`
	Rename tokenRenameCmd `cmd:"" help:"Rename credential ID; issues a new token as rotate does."`
	Revoke tokenRevokeCmd `cmd:"" help:"Remove credential ID; its token stops working at once."`
	List   tokenListCmd   `cmd:"" help:"List credentials (never tokens)."`
	Reseal tokenResealCmd `cmd:"" help:"Re-seal every signing secret under the key ring's first key, so that older keys can leave the ring."`
}

// issuedOutput is the contract's JSON object for issue, rotate and rename.
type issuedOutput struct {
	ID        string     `json:"id"`
	Org       string     `json:"org"`
	App       string     `json:"app"`
	Kind      auth.Kind  `json:"kind"`
	Name      string     `json:"name"`
	Token     string     `json:"token,omitempty"`
	Version   int64      `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	// SigningSecret is a generated signing secret, printed this once.
	SigningSecret string `json:"signing_secret,omitempty"`
}

func outputOf(c auth.Credential, token string) issuedOutput {
	var expires *time.Time
	if c.ExpiresAt != nil {
		e := c.ExpiresAt.UTC()
		expires = &e
	}
	return issuedOutput{ID: c.ID, Org: c.Org, App: c.App, Kind: c.Kind, Name: c.Name, Token: token,
		Version: c.Version, CreatedAt: c.CreatedAt.UTC(), ExpiresAt: expires}
}

// issuedPrinter prints an issued token for people or for scripts.
type issuedPrinter struct {
	JSON       bool   `help:"Print one JSON object for scripts."`
	GatewayURL string `default:"${default_gateway_url}" help:"Gateway URL used in the printed curl command."`
}

// print writes what was issued. imported names the file a signing secret
// was imported from, which is not printed.
func (p issuedPrinter) print(w io.Writer, verb string, is auth.Issued, imported string) error {
	if p.JSON {
		out := outputOf(is.Credential, is.Token)
		out.SigningSecret = is.SigningSecret
		return json.NewEncoder(w).Encode(out)
	}
	c := is.Credential
	scope := "any application"
	if c.App != "" {
		scope = "application " + c.App
	}
	fmt.Fprintf(w, "%s credential %s: org %s, kind %s, %s, name %q, version %d", verb, c.ID, c.Org, c.Kind, scope, c.Name, c.Version)
	if c.ExpiresAt != nil {
		fmt.Fprintf(w, ", expires %s", c.ExpiresAt.Format(time.RFC3339))
	}
	// The token appears once, in a command that works as printed: one
	// copy to find in a scrollback, and nothing to assemble by hand.
	fmt.Fprintf(w, "\n\nThe token is the Bearer value in the command below. It is shown only now: store it in your\nsender's secret settings.\n\n")
	route, app, body := "hits", c.App, `{"status":"firing","alerts":[]}`
	if c.Kind == auth.KindDeploy {
		route, body = "deploys", `{"version":"1.2.3","environment":"production"}`
	}
	if app == "" {
		app = "my-app"
		fmt.Fprintf(w, "It works for any application of %s; replace my-app with yours.\n", c.Org)
	}
	base := strings.TrimRight(p.GatewayURL, "/")
	fmt.Fprintf(w, "Try it:\n\n  curl -sS -X POST %s/v1/%s/%s \\\n    -H 'Authorization: Bearer %s' \\\n    -H 'Content-Type: application/json' \\\n    -d '%s'\n",
		base, route, app, is.Token, body)
	if c.Signing != nil {
		// What a signing sender's webhook settings page asks for, ready
		// to paste; the secret once, as the token.
		secret := is.SigningSecret
		switch {
		case imported != "":
			secret = "the one imported from " + imported + " (not shown)"
		case secret == "":
			secret = "(not shown)"
		}
		fmt.Fprintf(w, "\nSenders that sign their webhooks (GitHub, Gitea, Forgejo, Bitbucket, GitLab's signing token,\n"+
			"Standard Webhooks, Flux, CircleCI, PagerDuty, Sentry) take on their webhook settings page:\n\n"+
			"  URL:           %s/v1/%s/%s?credential=%s\n"+
			"  Secret:        %s\n"+
			"  Content type:  application/json (for GitHub, application/x-www-form-urlencoded works too)\n",
			base, route, app, c.ID, secret)
		if is.SigningSecret != "" {
			fmt.Fprintf(w, "\nThe secret is shown only now.\n")
		}
	}
	if is.GraceEnds != nil {
		old := "The previous token keeps"
		if c.Signing != nil {
			old = "The previous token and signing secret keep"
		}
		fmt.Fprintf(w, "\n%s working until %s: change your senders' settings before then.\n", old, is.GraceEnds.UTC().Format(time.RFC3339))
	}
	return nil
}

type tokenIssueCmd struct {
	Org     string        `required:"" help:"Organization the credential belongs to."`
	Kind    string        `required:"" enum:"hits,deploy" help:"hits (Hits/Failure webhooks) or deploy."`
	App     string        `help:"Application: required for deploy; for hits it limits the token to this application."`
	Name    string        `required:"" help:"A name people recognise, such as 'alertmanager prod'."`
	Expires time.Duration `help:"Lifetime as a Go duration (720h); none by default (0 is none too)."`
	Signing bool          `xor:"signing" help:"Also generate a signing secret, for senders that sign their webhooks (GitHub, Standard Webhooks, ...), and print it once."`
	// The file, not the secret, on the command line: a secret in argv is
	// seen by every user of the host (ps) and kept in shell histories.
	SigningSecretFile string `name:"signing-secret-file" xor:"signing" placeholder:"FILE" type:"path" help:"Import the signing secret a sender generated, from FILE (its content, trimmed of surrounding whitespace); it is never printed."`
	keyRing
	issuedPrinter
	natsClient
}

func (c *tokenIssueCmd) Run(e *env) error {
	if c.Org == "" {
		return usagef("--org is required")
	}
	if c.Kind == string(auth.KindDeploy) && c.App == "" {
		return usagef("--app is required for a deploy credential")
	}
	if err := checkNames("--org", c.Org, "--app", c.App); err != nil {
		return err
	}
	if c.Expires < 0 {
		return usagef("--expires %s: must be positive", c.Expires)
	}
	if !auth.ValidCredentialName(c.Name) {
		return usagef("--name: want 1 to 200 characters, no control characters")
	}
	req := auth.IssueRequest{Org: c.Org, Kind: auth.Kind(c.Kind), App: c.App, Name: c.Name, Expires: c.Expires, Signing: c.Signing}
	var sealer auth.Sealer
	if c.Signing || c.SigningSecretFile != "" {
		// Everything that can fail before the bucket is touched does.
		if c.SigningSecretFile != "" {
			data, err := os.ReadFile(c.SigningSecretFile)
			if err != nil {
				return fmt.Errorf("--signing-secret-file: %w", err)
			}
			if req.SigningSecret, err = auth.ParseSigningSecret(data); err != nil {
				return fmt.Errorf("--signing-secret-file %s: %w", c.SigningSecretFile, err)
			}
		}
		ring, err := c.load()
		if err != nil {
			return err
		}
		sealer = ring
	}
	reg, nc, err := c.registry(e, sealer)
	if err != nil {
		return err
	}
	defer nc.Close()
	is, err := reg.Issue(e.ctx, req)
	if err != nil {
		return err
	}
	return c.print(e.stdout, "Issued", is, c.SigningSecretFile)
}

// graceFlag is the --grace of rotate and rename.
type graceFlag struct {
	Grace time.Duration `help:"Keep the old token and signing secret working this long (a Go duration, 24h) beside the new ones, so that senders can be changed first; 0 (the default) ends them at once. token revoke ends it too."`
}

func (g graceFlag) check() error {
	if g.Grace < 0 {
		return usagef("--grace %s: must not be negative", g.Grace)
	}
	return nil
}

type tokenRotateCmd struct {
	ID string `arg:"" help:"Credential id."`
	graceFlag
	keyRing
	issuedPrinter
	natsClient
}

func (c *tokenRotateCmd) Run(e *env) error {
	if err := c.check(); err != nil {
		return err
	}
	reg, nc, err := c.registry(e, c.lazy())
	if err != nil {
		return err
	}
	defer nc.Close()
	is, err := reg.Reissue(e.ctx, c.ID, auth.ReissueRequest{Grace: c.Grace})
	if err != nil {
		return err
	}
	return c.print(e.stdout, "Rotated", is, "")
}

type tokenRenameCmd struct {
	ID   string `arg:"" help:"Credential id."`
	Name string `required:"" help:"The new name."`
	graceFlag
	keyRing
	issuedPrinter
	natsClient
}

func (c *tokenRenameCmd) Run(e *env) error {
	if !auth.ValidCredentialName(c.Name) {
		return usagef("--name: want 1 to 200 characters, no control characters")
	}
	if err := c.check(); err != nil {
		return err
	}
	reg, nc, err := c.registry(e, c.lazy())
	if err != nil {
		return err
	}
	defer nc.Close()
	is, err := reg.Reissue(e.ctx, c.ID, auth.ReissueRequest{Name: c.Name, Grace: c.Grace})
	if err != nil {
		return err
	}
	return c.print(e.stdout, "Renamed", is, "")
}

type tokenRevokeCmd struct {
	ID   string `arg:"" help:"Credential id."`
	JSON bool   `help:"Print one JSON object for scripts."`
	natsClient
}

func (c *tokenRevokeCmd) Run(e *env) error {
	reg, nc, err := c.registry(e, nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := reg.Revoke(e.ctx, c.ID); err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"id": c.ID, "revoked": true})
	}
	fmt.Fprintf(e.stdout, "Revoked credential %s; its token no longer works.\n", c.ID) // nor its signing secret, nor those in a grace period
	return nil
}

type tokenListCmd struct {
	Org  string `help:"Only this organization's credentials."`
	JSON bool   `help:"Print a JSON array for scripts."`
	natsClient
}

func (c *tokenListCmd) Run(e *env) error {
	if err := checkNames("--org", c.Org); err != nil {
		return err
	}
	reg, nc, err := c.registry(e, nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	creds, err := reg.List(e.ctx, c.Org)
	if err != nil {
		return err
	}
	if c.JSON {
		out := make([]issuedOutput, 0, len(creds))
		for _, cr := range creds {
			out = append(out, outputOf(cr, ""))
		}
		return json.NewEncoder(e.stdout).Encode(out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tORG\tKIND\tAPP\tNAME\tVERSION\tCREATED\tEXPIRES")
	for _, cr := range creds {
		app, exp := cr.App, "never"
		if app == "" {
			app = "*"
		}
		if cr.ExpiresAt != nil {
			exp = cr.ExpiresAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", cr.ID, cr.Org, cr.Kind, app, cr.Name, cr.Version, cr.CreatedAt.Format(time.RFC3339), exp)
	}
	return tw.Flush()
}

type tokenResealCmd struct {
	keyRing
	natsClient
}

func (c *tokenResealCmd) Run(e *env) error {
	ring, err := c.load()
	if err != nil {
		return err
	}
	reg, nc, err := c.registry(e, ring)
	if err != nil {
		return err
	}
	defer nc.Close()
	res, err := reg.Reseal(e.ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Resealed %d signing secrets in %d records under key %s; all %d credentials with a signing secret are sealed under it.\n",
		res.Secrets, res.Records, res.Key, res.Credentials)
	if others := ring.KeyIDs()[1:]; len(others) > 0 {
		fmt.Fprintf(e.stdout, "No record needs %s any more: it can leave %s (then send serve SIGHUP).\n", strings.Join(others, ", "), c.SecretKeys)
	}
	return nil
}
