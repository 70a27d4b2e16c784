package gateway

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/hookgate/hookgate/secretring"
)

// This file is the key ring that unseals signing secrets: found (or, on the
// embedded default, created) at start, re-read on ReloadSecretKeys.

// secretKeysPath is --secret-keys, by default in the data dir.
func (c *Config) secretKeysPath() string {
	if c.SecretKeys != "" {
		return c.SecretKeys
	}
	return filepath.Join(c.DataDir, secretring.FileName)
}

// openSecretKeys loads the key ring. The embedded default creates it when it
// is missing, so that a new user's two commands need nothing else; with
// --nats-url a missing ring is not created (every gateway must share one,
// distributed by the operator), and signed requests are refused meanwhile.
func (g *Gateway) openSecretKeys() (*secretring.File, error) {
	path := g.cfg.secretKeysPath()
	if g.cfg.NATS.URL == "" {
		ring, created, err := secretring.LoadOrCreate(path)
		if err != nil {
			return nil, fmt.Errorf("gateway: --secret-keys: %w", err)
		}
		if created {
			g.log.Info("created the key ring that seals signing secrets; back it up with the data dir", "secret_keys", path)
		}
		return secretring.NewFile(path, ring), nil
	}
	f, err := secretring.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		g.log.Warn("no key ring: signed requests are refused until one is given with --secret-keys and the gateway restarted",
			"secret_keys", path)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gateway: --secret-keys: %w", err)
	}
	return f, nil
}

// ReloadSecretKeys re-reads the key ring (on SIGHUP): a key added to the
// file unseals from now on, and one removed no longer does. A file that does
// not load leaves the ring in use as it was.
func (g *Gateway) ReloadSecretKeys() {
	if g.ring == nil {
		g.log.Warn("no key ring to reload; restart the gateway to load one", "secret_keys", g.cfg.secretKeysPath())
		return
	}
	if err := g.ring.Reload(); err != nil {
		g.log.Error("key ring not reloaded; the previous one stays in use", "err", err)
		return
	}
	g.log.Info("key ring reloaded", "secret_keys", g.ring.Path(), "sealing_key", g.ring.SealingKey())
}
