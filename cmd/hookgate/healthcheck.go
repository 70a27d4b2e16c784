package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// healthcheckCmd is a probe for images without a shell or curl: container
// healthchecks and exec probes run it inside the gateway's own image.
type healthcheckCmd struct {
	URL           string `name:"url" placeholder:"URL" help:"Ask this URL instead (default: /readyz or /healthz on 127.0.0.1 at the port of --metrics-listen)."`
	Live          bool   `help:"Ask /healthz (the process runs: restart me if not) instead of /readyz (ready to take webhooks)."`
	MetricsListen string `default:"${default_metrics_listen}" help:"serve's --metrics-listen: its port is asked on 127.0.0.1."`
}

// healthcheckTimeout is the contract's: a probe that takes longer failed.
const healthcheckTimeout = 2 * time.Second

func (c *healthcheckCmd) Run(e *env) error {
	url := c.URL
	if url == "" {
		_, port, err := net.SplitHostPort(c.MetricsListen)
		if err != nil || port == "" {
			return usagef("--metrics-listen %q: want host:port or :port", c.MetricsListen)
		}
		path := "/readyz"
		if c.Live {
			path = "/healthz"
		}
		url = "http://" + net.JoinHostPort("127.0.0.1", port) + path
	}
	client := &http.Client{
		Timeout: healthcheckTimeout,
		// A redirect is an answer, not 200: a probe must not wander off.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(url)
	if err != nil {
		var ue interface{ Timeout() bool }
		if errors.As(err, &ue) && ue.Timeout() {
			return fmt.Errorf("healthcheck %s: no answer within %s", url, healthcheckTimeout)
		}
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck %s: %s", url, resp.Status)
	}
	return nil
}
