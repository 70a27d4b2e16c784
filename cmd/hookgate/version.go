package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and buildCommit are set at build time:
// -ldflags "-X main.version=v1.2.3 -X main.buildCommit=$(git rev-parse HEAD)".
// Without buildCommit, the commit comes from Go's VCS stamp (go build in a
// git checkout); an image built without .git has only the flag.
var (
	version     = "dev"
	buildCommit = ""
)

type versionCmd struct{}

func (versionCmd) Run(e *env) error {
	fmt.Fprintf(e.stdout, "hookgate %s\ncommit %s\n%s\n", version, commit(), runtime.Version())
	return nil
}

func commit() string {
	if buildCommit != "" {
		return buildCommit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}
