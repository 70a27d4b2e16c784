package deploy_test

import (
	"strings"
	"testing"
)

// deploy/Dockerfile and the .dockerignore of its build context (the repo
// root), read as text: nothing here runs Docker.

// dockerfileStages returns the Dockerfile's instructions (continuation lines
// joined, comments dropped) and the FROM of each stage, and the final
// stage's instructions.
func dockerfileStages(t *testing.T) (src string, stages []string, final []string) {
	t.Helper()
	src = strings.ReplaceAll(string(readFile(t, "deploy/Dockerfile")), "\\\n", " ")
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(l, " ")
		if strings.EqualFold(instr, "FROM") {
			stages = append(stages, rest)
			final = nil
		}
		final = append(final, l)
	}
	if len(stages) < 2 {
		t.Fatalf("deploy/Dockerfile: stages %v, want a multi-stage build", stages)
	}
	return src, stages, final
}

// TestDockerfileFinalStage: a static binary on distroless (or scratch), run
// as a non-root user, with the listeners' ports and serve as its command.
func TestDockerfileFinalStage(t *testing.T) {
	_, stages, final := dockerfileStages(t)
	last := stages[len(stages)-1]
	if !strings.HasPrefix(last, "gcr.io/distroless/static") && last != "scratch" {
		t.Errorf("final stage FROM %s, want distroless static or scratch", last)
	}
	var user string
	for _, l := range final {
		if instr, rest, _ := strings.Cut(l, " "); strings.EqualFold(instr, "USER") {
			user = strings.TrimSpace(rest)
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "root" || uid == "0" {
		t.Errorf("final stage USER %q, want a non-root user", user)
	}
	text := strings.Join(final, "\n")
	for _, want := range []string{"EXPOSE 8080 9180", `ENTRYPOINT ["/hookgate"]`, `CMD ["serve"]`} {
		if !strings.Contains(text, want) {
			t.Errorf("final stage lacks %s", want)
		}
	}
}

// TestDockerfileBuild: the builder is Go 1.26 and builds the release binary:
// static, trimmed, stripped, versioned, with the repo's PGO profile.
func TestDockerfileBuild(t *testing.T) {
	src, stages, _ := dockerfileStages(t)
	if !strings.HasPrefix(stages[0], "golang:") {
		t.Errorf("builder stage FROM %s, want golang:1.26", stages[0])
	}
	if !strings.Contains(src, "GO_VERSION=1.26") && !strings.HasPrefix(stages[0], "golang:1.26") {
		t.Error("builder is not golang:1.26")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=${VERSION}", "./cmd/hookgate"} {
		if !strings.Contains(src, want) {
			t.Errorf("build step lacks %s", want)
		}
	}
	// The profile must exist and be a pprof profile (gzipped protobuf).
	var pgo string
	for _, f := range strings.Fields(src) {
		if p, ok := strings.CutPrefix(f, "-pgo="); ok {
			pgo = p
		}
	}
	if pgo == "" {
		t.Fatal("build step lacks -pgo=cmd/hookgate/hookgate.pgo")
	}
	if b := readFile(t, pgo); len(b) < 1024 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("%s is not a gzipped pprof profile (%d bytes)", pgo, len(b))
	}
}

// TestDockerignore: the build context keeps what the build needs.
func TestDockerignore(t *testing.T) {
	for _, l := range strings.Split(string(readFile(t, ".dockerignore")), "\n") {
		l = strings.TrimSpace(l)
		for _, need := range []string{"go.mod", "go.sum", "cmd", "*.go"} {
			if l == need || l == "/"+need {
				t.Errorf(".dockerignore excludes %s, which the build needs", need)
			}
		}
	}
}
