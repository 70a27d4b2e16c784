package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// userDocs are the files a user reads to learn the command line: the README
// and docs/*.md, less the two that are not a user's guide (the contract copy,
// which also holds what is not built yet, and the performance log).
func userDocs(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	docs := map[string]string{}
	for _, f := range files {
		switch filepath.Base(f) {
		case "contract.md", "performance-log.md":
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[strings.TrimPrefix(f, "../../")] = string(b)
	}
	return docs
}

// docCommand is one command of the kong model with the flags a user sees.
type docCommand struct {
	path  string   // "token rename"
	flags []string // "--org"; "--no-credential-metrics" too for a negatable flag
}

// docCommands walks the kong model that run parses with: every command that
// is not hidden, with its flags that are not hidden. --help is left out: kong
// gives it to every command.
func docCommands(t *testing.T) []docCommand {
	t.Helper()
	parser, err := newParser(&cli{}, io.Discard, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatalf("kong model: %v", err)
	}
	var out []docCommand
	var walk func(n *kong.Node, path string)
	walk = func(n *kong.Node, path string) {
		for _, child := range n.Children {
			if child.Type != kong.CommandNode || child.Hidden {
				continue
			}
			p := strings.TrimSpace(path + " " + child.Name)
			c := docCommand{path: p}
			for _, f := range child.Flags {
				if f.Hidden || f.Name == "help" {
					continue
				}
				c.flags = append(c.flags, "--"+f.Name)
				if f.Tag != nil && f.Tag.Negatable != "" {
					c.flags = append(c.flags, "--no-"+f.Name)
				}
			}
			out = append(out, c)
			walk(child, p)
		}
	}
	walk(parser.Model.Node, "")
	return out
}

// docSections splits a markdown file at its headings.
func docSections(text string) []string {
	var out []string
	var cur strings.Builder
	fence := false
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, "```") {
			fence = !fence
		}
		if !fence && strings.HasPrefix(line, "#") && cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
		cur.WriteString(line)
	}
	return append(out, cur.String())
}

// namesCommand matches a command as a user meets it in the docs:
// `hookgate token list` or, for a subcommand in a sentence that already said
// hookgate, `token list` in backticks. A one-word command needs hookgate
// before it: "tail latency" or the field `version` do not name a command.
func namesCommand(path string) *regexp.Regexp {
	before := "hookgate "
	if strings.Contains(path, " ") {
		before = "(hookgate |`)"
	}
	return regexp.MustCompile(before + regexp.QuoteMeta(path) + `([^a-z0-9-]|$)`)
}

// namesFlag matches --max-conns but not inside --max-conns-per-ip.
func namesFlag(flag string) *regexp.Regexp {
	return regexp.MustCompile(regexp.QuoteMeta(flag) + `([^a-z0-9-]|$)`)
}

// undocumented lists what the docs do not name: a command no doc names, or
// a flag of a command that no section naming that command names (a
// negatable flag counts with either spelling). A section runs from one
// heading to the next.
func undocumented(cmds []docCommand, docs map[string]string) []string {
	var sections []string
	for _, text := range docs {
		sections = append(sections, docSections(text)...)
	}
	var missing []string
	for _, c := range cmds {
		cmd := namesCommand(c.path)
		var where []string
		for _, s := range sections {
			if cmd.MatchString(s) {
				where = append(where, s)
			}
		}
		if len(where) == 0 {
			missing = append(missing, "command `hookgate "+c.path+"`")
			continue
		}
		for i := 0; i < len(c.flags); i++ {
			names := []string{c.flags[i]}
			if i+1 < len(c.flags) && c.flags[i+1] == "--no-"+strings.TrimPrefix(c.flags[i], "--") {
				i++
				names = append(names, c.flags[i])
			}
			if !anyMatch(where, names) {
				missing = append(missing, "`hookgate "+c.path+" "+names[0]+"`")
			}
		}
	}
	return missing
}

func anyMatch(sections, flags []string) bool {
	for _, f := range flags {
		re := namesFlag(f)
		for _, s := range sections {
			if re.MatchString(s) {
				return true
			}
		}
	}
	return false
}

// TestDocsNameEveryCommandAndFlag walks kong's model of the command line and
// wants every command, and every flag of it, named in the README or docs/: a
// flag in a section (heading to heading) that names its command. Hidden flags
// are left undocumented on purpose.
func TestDocsNameEveryCommandAndFlag(t *testing.T) {
	cmds := docCommands(t)
	if len(cmds) < 8 {
		t.Fatalf("kong model has %d commands, want serve, token *, tail, version at least", len(cmds))
	}
	for _, m := range undocumented(cmds, userDocs(t)) {
		t.Errorf("not in README.md or docs/: %s", m)
	}
}

// TestDocsCheckCatchesAGap makes sure the check above can fail: with one
// flag, or one command, taken out of the docs it must say so.
func TestDocsCheckCatchesAGap(t *testing.T) {
	cmds := docCommands(t)
	docs := userDocs(t)
	if m := undocumented(cmds, docs); len(m) > 0 {
		t.Skipf("the docs already miss %v (TestDocsNameEveryCommandAndFlag fails)", m)
	}
	without := func(s string) map[string]string {
		out := map[string]string{}
		for f, text := range docs {
			out[f] = strings.ReplaceAll(text, s, "")
		}
		return out
	}
	for _, tc := range []struct{ remove, want string }{
		{"--gateway-url", "`hookgate token issue --gateway-url`"},
		{"--max-in-flight", "`hookgate serve --max-in-flight`"},
		{"hookgate version", "command `hookgate version`"},
	} {
		got := undocumented(cmds, without(tc.remove))
		if !strings.Contains(strings.Join(got, "\n"), tc.want) {
			t.Errorf("docs without %q: the check reports %v, want %s among them", tc.remove, got, tc.want)
		}
	}
}

// TestDocsLayoutNamesEveryDirectory wants the README's layout table to name
// every top-level directory of the repository, and every package under
// internal/. Hidden directories are left out, but for .ci; data/ is where a
// serve started in the clone keeps its files (.gitignore).
func TestDocsLayoutNamesEveryDirectory(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no ## Layout section")
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	var dirs []string
	for _, parent := range []string{"", "internal/"} {
		entries, err := os.ReadDir("../../" + parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			name := e.Name()
			if !e.IsDir() || name == "data" || name == "internal" && parent == "" ||
				strings.HasPrefix(name, ".") && name != ".ci" {
				continue
			}
			dirs = append(dirs, parent+name)
		}
	}
	for _, d := range dirs {
		if !strings.Contains(layout, "| `"+d+"`") && !strings.Contains(layout, "| `"+d+"/") {
			t.Errorf("README.md's layout table has no row for %s/", d)
		}
	}
}
