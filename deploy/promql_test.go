package deploy_test

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The metric names a PromQL expression selects.
//
// Which reader, and why this one: hookgate's module graph has no PromQL
// parser (github.com/prometheus/prometheus is not a dependency, and adding it
// for one test would pull its large graph into go.mod), and Debian's promtool
// has no command that prints an expression's parts. So the syntax is left to
// promtool (check rules runs on the rule file, and on the dashboard's queries
// written out as recording rules), and selectorNames only reads tokens of
// expressions promtool accepts: it tells a selector's metric name from the
// other things an identifier can be. What it cannot read it refuses with an
// error rather than guess.

type promTokenKind int

const (
	tokIdent    promTokenKind = iota // metric, function, keyword or label name
	tokString                        // "...", '...' or `...`
	tokNumber                        // 0.5, 1e3, 0x1f, and durations: 5m, 1h30m
	tokMatchers                      // {...}, whole
	tokRange                         // [...], whole: a range or a subquery's range and step
	tokLParen
	tokRParen
	tokOther // operators and commas
)

type promToken struct {
	kind promTokenKind
	text string
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) }

// stringEnd returns the index just past the string literal that starts at i.
func stringEnd(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at %d", i)
}

// promTokens splits a PromQL expression (or a series description of a rule
// unit test) into tokens; label matchers and ranges are one token each.
func promTokens(expr string) ([]promToken, error) {
	var toks []promToken
	for i := 0; i < len(expr); {
		c := expr[i]
		start := i
		var kind promTokenKind
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '#': // a comment, to the end of the line
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
			continue
		case c == '"' || c == '\'' || c == '`':
			end, err := stringEnd(expr, i)
			if err != nil {
				return nil, err
			}
			kind, i = tokString, end
		case isIdentStart(c):
			for i++; i < len(expr) && isIdentChar(expr[i]); i++ {
			}
			kind = tokIdent
		case isDigit(c) || c == '.' && i+1 < len(expr) && isDigit(expr[i+1]):
			for i++; i < len(expr); i++ {
				e := expr[i-1] == 'e' || expr[i-1] == 'E'
				if !isIdentChar(expr[i]) && expr[i] != '.' && !(e && (expr[i] == '+' || expr[i] == '-')) {
					break
				}
			}
			kind = tokNumber
		case c == '{':
			for i++; i < len(expr) && expr[i] != '}'; i++ {
				if q := expr[i]; q == '"' || q == '\'' || q == '`' {
					end, err := stringEnd(expr, i)
					if err != nil {
						return nil, err
					}
					i = end - 1
				}
			}
			if i == len(expr) {
				return nil, fmt.Errorf("unclosed { at %d", start)
			}
			kind, i = tokMatchers, i+1
		case c == '[':
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ at %d", start)
			}
			kind, i = tokRange, i+end+1
		case c == '(':
			kind, i = tokLParen, i+1
		case c == ')':
			kind, i = tokRParen, i+1
		case strings.IndexByte("+-*/%^=!<>~,@", c) >= 0:
			kind, i = tokOther, i+1
		default:
			return nil, fmt.Errorf("%q at %d is not part of a PromQL token", c, i)
		}
		toks = append(toks, promToken{kind: kind, text: expr[start:i]})
	}
	return toks, nil
}

// promKeywords are the identifiers that are neither metric nor function names
// (PromQL reads keywords case-insensitively).
var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// promLabelLists are the keywords that take a parenthesized list of labels.
var promLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// selectorNames returns the metric names of the vector and range selectors in
// expr, in order of first use. An identifier outside braces and brackets is a
// metric name unless it is a keyword, a function or aggregation (followed by
// "(", or by "by"/"without"), or a label of a by/without/on/ignoring/
// group_left/group_right list. A selector without a name before its braces
// ({__name__="x"}) is refused.
func selectorNames(expr string) ([]string, error) {
	toks, err := promTokens(expr)
	if err != nil {
		return nil, err
	}
	next := func(i int) promToken {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return promToken{}
	}
	var names []string
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		switch tok.kind {
		case tokMatchers:
			if i == 0 || toks[i-1].kind != tokIdent {
				return nil, fmt.Errorf("selector %s has no metric name before its braces", tok.text)
			}
		case tokIdent:
			word := strings.ToLower(tok.text)
			switch {
			case promLabelLists[word] && next(i).kind == tokLParen:
				// Skip the label list: identifiers or strings between commas.
				j := i + 2
				for ; j < len(toks) && toks[j].kind != tokRParen; j++ {
					if k := toks[j].kind; k != tokIdent && k != tokString && toks[j].text != "," {
						return nil, fmt.Errorf("%q in the label list of %s", toks[j].text, tok.text)
					}
				}
				if j == len(toks) {
					return nil, fmt.Errorf("unclosed label list of %s", tok.text)
				}
				i = j
			case promKeywords[word]:
			case next(i).kind == tokLParen:
				// a function, or an aggregation with its grouping after
			case next(i).kind == tokIdent && (strings.EqualFold(next(i).text, "by") || strings.EqualFold(next(i).text, "without")):
				// an aggregation with its grouping first: sum by (job) (...)
			default:
				if !slices.Contains(names, tok.text) {
					names = append(names, tok.text)
				}
			}
		}
	}
	return names, nil
}

func TestSelectorNames(t *testing.T) {
	cases := []struct {
		name string
		expr string
		want []string
	}{
		{"selector compared", `up{job="hookgate"} == 0`, []string{"up"}},
		{"grouping before and after", `sum by (job, instance) (rate(a_total{code=~"5.."}[5m])) / sum(rate(a_total[5m])) without (code)`, []string{"a_total"}},
		{"numbers", `histogram_quantile(0.99, sum by (le) (rate(h_seconds_bucket[5m]))) > 1e3 + 0x1f - .5 * 1e-3`, []string{"h_seconds_bucket"}},
		{"offset, subquery, and on, group_left", `rate(a_total[1h] offset 5m) > 3 * max_over_time(b[1h:5m]) and on (instance) c * on (instance) group_left (version) d`, []string{"a_total", "b", "c", "d"}},
		{"group_left without a list", `a * on (instance) group_left b`, []string{"a", "b"}},
		{"braces and keywords in strings", `count(build_info{version!="by (x) } or y", x='{z}'})`, []string{"build_info"}},
		{"absent", `absent(up{job="hookgate"})`, []string{"up"}},
		{"function of no selector", `sort_desc(time() - max by (org) (seen_seconds))`, []string{"seen_seconds"}},
		{"strings as arguments", `label_replace(m, "dst", "$1", "src", "(.*)")`, []string{"m"}},
		{"@ modifier", `x @ start() + y @ 1609746000`, []string{"x", "y"}},
		{"keywords in capitals, bool", `a AND b > BOOL 1 UNLESS c OR d`, []string{"a", "b", "c", "d"}},
		{"comment", "a # b\n + c", []string{"a", "c"}},
		{"recording-rule names", `job:requests:rate5m > 0`, []string{"job:requests:rate5m"}},
		{"no selector", `vector(1)`, nil},
	}
	// The cases are PromQL, as the expressions selectorNames is given are.
	var exprs []promExpr
	for _, tc := range cases {
		exprs = append(exprs, promExpr{tc.name, tc.expr})
	}
	promtoolCheckExprs(t, exprs)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := selectorNames(tc.expr)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("selectorNames(%q) = %q, %v; want %q", tc.expr, got, err, tc.want)
			}
		})
	}
}

func TestSelectorNamesRefuses(t *testing.T) {
	for _, expr := range []string{
		`{__name__="up"}`,
		`rate(x[$__rate_interval])) + $y`,
		`x{a="b"`,
		`x{a="b}`,
		`rate(x[5m)`,
		`sum by (job, rate(x[5m])) (y)`,
		`sum by (job`,
	} {
		if got, err := selectorNames(expr); err == nil {
			t.Errorf("selectorNames(%q) = %q, want an error", expr, got)
		}
	}
}

// seriesLabels reads a series description of a rule unit test,
// `name{label="value", ...}`, into its name and labels.
func seriesLabels(desc string) (string, map[string]string, error) {
	toks, err := promTokens(desc)
	if err != nil {
		return "", nil, err
	}
	if len(toks) == 0 || len(toks) > 2 || toks[0].kind != tokIdent || len(toks) == 2 && toks[1].kind != tokMatchers {
		return "", nil, fmt.Errorf("series %q: want name{label=\"value\", ...}", desc)
	}
	labels := map[string]string{}
	if len(toks) == 2 {
		inner, err := promTokens(strings.TrimSuffix(strings.TrimPrefix(toks[1].text, "{"), "}"))
		if err != nil {
			return "", nil, err
		}
		for len(inner) > 0 {
			if len(inner) < 3 || inner[0].kind != tokIdent || inner[1].text != "=" || inner[2].kind != tokString {
				return "", nil, fmt.Errorf("series %q: want label=\"value\" pairs", desc)
			}
			v, err := strconv.Unquote(inner[2].text)
			if err != nil {
				return "", nil, fmt.Errorf("series %q: value %s: %v", desc, inner[2].text, err)
			}
			labels[inner[0].text] = v
			inner = inner[3:]
			if len(inner) > 0 {
				if inner[0].text != "," {
					return "", nil, fmt.Errorf("series %q: want a comma between label pairs", desc)
				}
				inner = inner[1:]
			}
		}
	}
	return toks[0].text, labels, nil
}

func TestSeriesLabels(t *testing.T) {
	name, labels, err := seriesLabels(`ALERTS{alertname="HookgateDown", alertstate="firing", instance="gateway-1:9180"}`)
	want := map[string]string{"alertname": "HookgateDown", "alertstate": "firing", "instance": "gateway-1:9180"}
	if err != nil || name != "ALERTS" || !maps.Equal(labels, want) {
		t.Errorf("got %q %v %v, want ALERTS %v", name, labels, err, want)
	}
	for _, bad := range []string{`{a="b"}`, `x{a=~"b"}`, `x{a="b" c="d"}`, `rate(x[5m])`} {
		if name, labels, err := seriesLabels(bad); err == nil {
			t.Errorf("seriesLabels(%q) = %q %v, want an error", bad, name, labels)
		}
	}
}
