package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
)

// natsClient are the flags of a command that talks to a running NATS.
type natsClient struct {
	NatsURL   string `name:"nats-url" default:"${default_nats_url}" help:"NATS server URL."`
	natsNames `set:"replicas_help=Replicas of the bucket if this command creates it."`
	natsAuth
}

// registry connects and returns the credentials registry, creating the bucket
// when missing as serve does.
func (n natsClient) registry(ctx context.Context) (*auth.Registry, *nats.Conn, error) {
	nc, err := n.dial(n.NatsURL, "hookgate-token")
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	kv, err := bus.EnsureBucket(ctx, js, n.TokensBucket, n.Replicas)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return &auth.Registry{KV: kv}, nc, nil
}

type tokenCmd struct {
	Issue  tokenIssueCmd  `cmd:"" help:"Create a credential and print its token once, with a ready-to-run curl command."`
	Rotate tokenRotateCmd `cmd:"" help:"Issue a new token for credential ID; the old one stops working at once."`
	Rename tokenRenameCmd `cmd:"" help:"Rename credential ID; issues a new token as rotate does."`
	Revoke tokenRevokeCmd `cmd:"" help:"Remove credential ID; its token stops working at once."`
	List   tokenListCmd   `cmd:"" help:"List credentials (never tokens)."`
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

func (p issuedPrinter) print(w io.Writer, verb string, is auth.Issued) error {
	if p.JSON {
		return json.NewEncoder(w).Encode(outputOf(is.Credential, is.Token))
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
	fmt.Fprintf(w, "Try it:\n\n  curl -sS -X POST %s/v1/%s/%s \\\n    -H 'Authorization: Bearer %s' \\\n    -H 'Content-Type: application/json' \\\n    -d '%s'\n",
		strings.TrimRight(p.GatewayURL, "/"), route, app, is.Token, body)
	return nil
}

type tokenIssueCmd struct {
	Org     string        `required:"" help:"Organization the credential belongs to."`
	Kind    string        `required:"" enum:"hits,deploy" help:"hits (Hits/Failure webhooks) or deploy."`
	App     string        `help:"Application: required for deploy; for hits it limits the token to this application."`
	Name    string        `required:"" help:"A name people recognise, such as 'alertmanager prod'."`
	Expires time.Duration `help:"Lifetime as a Go duration (720h); none by default (0 is none too)."`
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
	reg, nc, err := c.registry(e.ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	is, err := reg.Issue(e.ctx, auth.IssueRequest{Org: c.Org, Kind: auth.Kind(c.Kind), App: c.App, Name: c.Name, Expires: c.Expires})
	if err != nil {
		return err
	}
	return c.print(e.stdout, "Issued", is)
}

type tokenRotateCmd struct {
	ID string `arg:"" help:"Credential id."`
	issuedPrinter
	natsClient
}

func (c *tokenRotateCmd) Run(e *env) error {
	reg, nc, err := c.registry(e.ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	is, err := reg.Rotate(e.ctx, c.ID)
	if err != nil {
		return err
	}
	return c.print(e.stdout, "Rotated", is)
}

type tokenRenameCmd struct {
	ID   string `arg:"" help:"Credential id."`
	Name string `required:"" help:"The new name."`
	issuedPrinter
	natsClient
}

func (c *tokenRenameCmd) Run(e *env) error {
	if !auth.ValidCredentialName(c.Name) {
		return usagef("--name: want 1 to 200 characters, no control characters")
	}
	reg, nc, err := c.registry(e.ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	is, err := reg.Rename(e.ctx, c.ID, c.Name)
	if err != nil {
		return err
	}
	return c.print(e.stdout, "Renamed", is)
}

type tokenRevokeCmd struct {
	ID   string `arg:"" help:"Credential id."`
	JSON bool   `help:"Print one JSON object for scripts."`
	natsClient
}

func (c *tokenRevokeCmd) Run(e *env) error {
	reg, nc, err := c.registry(e.ctx)
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
	fmt.Fprintf(e.stdout, "Revoked credential %s; its token no longer works.\n", c.ID)
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
	reg, nc, err := c.registry(e.ctx)
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
