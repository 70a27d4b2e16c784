package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

type tailCmd struct {
	NatsURL   string                                                                  `name:"nats-url" default:"${default_nats_url}" help:"NATS server URL."`
	natsNames `set:"subject_prefix_help=Subject prefix the gateway publishes under."` // and stream_help, set on the command (one set per tag)
	Org       string                                                                  `help:"Only this organization."`
	App       string                                                                  `help:"Only this application."`
	Kind      string                                                                  `enum:"hits,deploy," default:"" help:"Only this kind: hits or deploy."`
	natsAuth
}

func (c *tailCmd) Run(e *env) error {
	if err := checkNames("--org", c.Org, "--app", c.App); err != nil {
		return err
	}
	nc, err := c.dial(c.NatsURL, "hookgate-tail")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	stream, err := js.Stream(e.ctx, c.Stream)
	if err != nil {
		return fmt.Errorf("stream %q: %w (is the gateway running?)", c.Stream, err)
	}
	filter := strings.Join([]string{c.SubjectPrefix, orAny(c.Org), orAny(c.App), orAny(c.Kind)}, ".")
	cons, err := stream.OrderedConsumer(e.ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("consume %s: %w", filter, err)
	}
	fmt.Fprintf(e.stderr, "Waiting for webhooks on %s (Ctrl-C to stop)\n", filter)
	cc, err := cons.Consume(func(m jetstream.Msg) { fmt.Fprintln(e.stdout, tailLine(m, c.SubjectPrefix)) })
	if err != nil {
		return fmt.Errorf("consume %s: %w", filter, err)
	}
	<-e.ctx.Done()
	cc.Stop()
	return nil
}

// tailLine is one stored webhook as tail prints it: the time the stream
// stored it, organization, application and kind (the subject's tokens), the
// credential, and the body.
func tailLine(m jetstream.Msg, prefix string) string {
	at := "?"
	if md, err := m.Metadata(); err == nil {
		at = md.Timestamp.UTC().Format(time.RFC3339Nano)
	}
	org, app, kind := "?", "?", "?"
	if tokens := strings.Split(strings.TrimPrefix(m.Subject(), prefix+"."), "."); len(tokens) == 3 {
		org, app, kind = tokens[0], tokens[1], tokens[2]
	}
	return fmt.Sprintf("%s org=%s app=%s kind=%s credential=%s %s", at, org, app, kind, m.Headers().Get("Hook-Credential"), m.Data())
}

func orAny(s string) string {
	if s == "" {
		return "*"
	}
	return s
}
