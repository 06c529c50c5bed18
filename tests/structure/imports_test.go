package structure

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is kasa's module path; the rules below name packages relative to it.
const module = "github.com/kasa-io/kasa"

// A rule forbids the packages matched by from (except those matched by
// except) to import, directly or through other kasa packages, any package
// matched by to (except those matched by allow). A pattern is a package
// path relative to the module; "/..." adds its subpackages, "..." alone is
// every package of the module. A package's own tests count as its imports
// (their first step only: what a dependency's tests import does not),
// unless codeOnly: then only the code that ships is held to the rule.
type rule struct {
	from, except string
	to, allow    string
	why          string
	codeOnly     bool
}

// rules are kasa's package boundaries (docs/architecture.md). A new one is
// one line. Rules whose to names no package yet hold trivially until it
// exists; each from must name a package.
var rules = []rule{
	{from: "pkg/agent/...", to: "pkg/server/...", why: "the agent runs nodes without a control plane: it never imports the server"},
	// The agent's tests join through the real server side (pkg/join/jointest).
	{from: "pkg/agent/...", to: "pkg/join/joinserver/...", codeOnly: true, why: "the agent is the join's client: it never imports the server side"},
	{from: "pkg/join/joinclient/...", to: "pkg/join/joinserver/...", codeOnly: true, why: "the join's two sides meet only in the wire types of pkg/join"},
	{from: "pkg/join/joinserver/...", to: "pkg/join/joinclient/...", codeOnly: true, why: "the join's two sides meet only in the wire types of pkg/join"},
	{from: "pkg/join", to: "pkg/join/...", allow: "pkg/join", why: "pkg/join holds the wire types both sides share; it imports neither side"},
	{from: "pkg/...", except: "pkg/cli/...", to: "pkg/cli/...", why: "libraries know no command line: only cmd/ and pkg/cli build commands"},
	{from: "charts/...", to: "pkg/cli/...", why: "libraries know no command line"},
	{from: "manifests/...", to: "pkg/cli/...", why: "libraries know no command line"},
	{from: "install/...", to: "pkg/cli/...", why: "libraries know no command line"},
	{from: "pkg/up/...", to: "pkg/server/...", why: "kasa up drives hosts over SSH; it runs no server"},
	{from: "pkg/up/...", to: "pkg/agent/...", why: "kasa up drives hosts over SSH; it runs no node"},
	{from: "pkg/catalog/...", to: "pkg/server/...", why: "the catalog is a Helm client of any cluster; it runs no server"},
	{from: "pkg/catalog/...", to: "pkg/agent/...", why: "the catalog is a Helm client of any cluster; it runs no node"},
	// The lifecycle knows no component: pkg/component imports no other
	// kasa package at all. A small leaf utility (one that itself imports
	// no kasa package, like pkg/fileutil) may be added to allow, never a
	// package that is or holds a component.
	{from: "pkg/component/...", to: "...", allow: "pkg/component/...", why: "the lifecycle knows no component"},
}

// pkg is what go list tells of a package.
type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

// match reports whether the module-relative path p matches pattern.
func match(pattern, p string) bool {
	switch {
	case pattern == "":
		return false
	case pattern == "...":
		return true
	case strings.HasSuffix(pattern, "/..."):
		base := strings.TrimSuffix(pattern, "/...")
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

// loadGraph returns the module's packages, by module-relative path, with
// their imports of other module packages; the first slice is what the
// package's code imports, the second what its tests import besides.
func loadGraph(t *testing.T) (code, tests map[string][]string) {
	t.Helper()
	// Every build tag the tests use, so that tagged files count too.
	cmd := exec.Command("go", "list", "-e", "-json", "-tags", "integration,e2e", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	rel := func(list []string) []string {
		var r []string
		for _, p := range list {
			if p == module || strings.HasPrefix(p, module+"/") {
				r = append(r, strings.TrimPrefix(strings.TrimPrefix(p, module), "/"))
			}
		}
		return r
	}
	code, tests = map[string][]string{}, map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		name := rel([]string{p.ImportPath})[0]
		code[name] = rel(p.Imports)
		tests[name] = slices.DeleteFunc(rel(append(p.TestImports, p.XTestImports...)), func(d string) bool { return d == name })
	}
	if len(code) < 20 {
		t.Fatalf("go list found %d packages of %s; want the whole module", len(code), module)
	}
	observeSources(t)
	return code, tests
}

// observeSources reads the module's folders and Go files, which go list
// read in another process: go test caches a passing result until a file
// the test itself read changes, so without this an import added later
// would not run the test again.
func observeSources(t *testing.T) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if _, err := os.ReadFile(gomod); err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(gomod)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			// What the go command skips, and the build output.
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") ||
				name == "testdata" || name == "vendor" || path == filepath.Join(root, "bin") || path == filepath.Join(root, "build")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") {
			_, err = os.ReadFile(path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// violations returns, for each package that r applies to, the shortest
// import chain from it to each package that r forbids it. A chain ends at
// the first forbidden package, and does not go through another package
// that r applies to (that one's own chain is reported instead).
func violations(r rule, code, tests map[string][]string) (chains [][]string, matched bool) {
	var from []string
	for p := range code {
		if match(r.from, p) && !match(r.except, p) {
			from = append(from, p)
		}
	}
	slices.Sort(from)
	for _, start := range from {
		matched = true
		// Breadth first, so each chain found is a shortest one.
		prev := map[string]string{start: ""}
		queue := []string{start}
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			next := code[p]
			if p == start && !r.codeOnly {
				next = append(slices.Clone(next), tests[p]...)
			}
			for _, d := range next {
				if _, seen := prev[d]; seen || d == start {
					continue
				}
				prev[d] = p
				switch {
				case match(r.to, d) && !match(r.allow, d):
					var chain []string
					for q := d; q != ""; q = prev[q] {
						chain = append([]string{q}, chain...)
					}
					chains = append(chains, chain)
				case match(r.from, d) && !match(r.except, d):
					// d is checked on its own: a chain through it is
					// reported from d, once.
				default:
					queue = append(queue, d)
				}
			}
		}
	}
	return chains, matched
}

// TestImportBoundaries fails with the import chain that crosses a rule.
func TestImportBoundaries(t *testing.T) {
	code, tests := loadGraph(t)
	for _, r := range rules {
		chains, matched := violations(r, code, tests)
		if !matched {
			t.Errorf("rule %s -> %s: no package matches %q; fix the rule", r.from, r.to, r.from)
		}
		for _, c := range chains {
			t.Errorf("%s imports %s: %s\n\t%s", c[0], c[len(c)-1], r.why, strings.Join(c, " -> "))
		}
	}
}

// TestViolations: the check finds a chain through other packages and a
// test's import, and honours except and allow.
func TestViolations(t *testing.T) {
	code := map[string][]string{
		"pkg/agent":           {"pkg/agent/sub", "pkg/fileutil"},
		"pkg/agent/sub":       {"pkg/join"},
		"pkg/join":            {"pkg/server/certs"},
		"pkg/server/certs":    nil,
		"pkg/fileutil":        nil,
		"pkg/cli/x":           {"pkg/cli/y"},
		"pkg/cli/y":           nil,
		"pkg/component":       {"pkg/component/inner"},
		"pkg/component/inner": nil,
		"pkg/lib":             {"pkg/fileutil"},
	}
	tests := map[string][]string{"pkg/lib": {"pkg/cli/y"}, "pkg/fileutil": {"pkg/cli/x"}}
	for _, c := range []struct {
		r    rule
		want []string
	}{
		{rule{from: "pkg/agent/...", to: "pkg/server/..."}, []string{
			"pkg/agent/sub -> pkg/join -> pkg/server/certs",
		}},
		// pkg/lib's test counts; pkg/fileutil's test is not pkg/agent's.
		{rule{from: "pkg/...", except: "pkg/cli/...", to: "pkg/cli/..."}, []string{
			"pkg/fileutil -> pkg/cli/x",
			"pkg/lib -> pkg/cli/y",
		}},
		{rule{from: "pkg/component/...", to: "...", allow: "pkg/component/..."}, nil},
		{rule{from: "pkg/component/...", to: "..."}, []string{"pkg/component -> pkg/component/inner"}},
	} {
		chains, matched := violations(c.r, code, tests)
		var got []string
		for _, ch := range chains {
			got = append(got, strings.Join(ch, " -> "))
		}
		if !matched || !slices.Equal(got, c.want) {
			t.Errorf("%+v: got %q (matched %v), want %q", c.r, got, matched, c.want)
		}
	}
	if _, matched := violations(rule{from: "pkg/nothing/...", to: "..."}, code, tests); matched {
		t.Error("a rule that names no package matched")
	}
}
