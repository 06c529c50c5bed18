// Package settings is the one path from KASA_* environment variables and
// config files to the flags of kasa's commands, and the one rule for finding
// the data dir. Package config types and validates what it resolves; this
// package needs nothing but pflag and YAML, so that the release's launcher
// (cmd/kasa-launcher) finds the data dir exactly as kasa does.
//
// Every setting is a flag. A flag that was not given on the command line takes
// its value from the environment (KASA_<FLAG_NAME>, plus any alias such as
// KASA_URL), else from the config files (/etc/kasa/config.yaml, then
// /etc/kasa/config.yaml.d/*.yaml in name order, keys being flag names), else
// keeps its default. Resolve applies that order to a parsed pflag.FlagSet;
// the Complete methods of the options types then validate and type the values.
package settings

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// DefaultDataDir is the data dir when nothing names another (k3s's is
// /var/lib/rancher/k3s).
const DefaultDataDir = "/var/lib/kasa"

// DefaultConfigFile is read when --config and KASA_CONFIG_FILE are not given.
const DefaultConfigFile = "/etc/kasa/config.yaml"

// ConfigFlag is the name of the flag that picks the config file.
const ConfigFlag = "config"

const (
	envAnnotation       = "kasa.env"
	sensitiveAnnotation = "kasa.sensitive"
	envPrefix           = "KASA_"
)

// ErrConfig marks errors in a config file.
var ErrConfig = errors.New("config file")

// Sources is where settings come from besides the command line. The CLI layer
// passes the process environment; tests pass their own.
type Sources struct {
	// LookupEnv returns an environment variable, as os.LookupEnv does.
	LookupEnv func(string) (string, bool)
	// IgnoreUnknownKeys lets a command that takes a few of the settings
	// (kasa killall's --data-dir) read the server's config file.
	IgnoreUnknownKeys bool
}

// EnvAlias binds extra environment variables to a flag (KASA_URL for --server,
// for example). KASA_<FLAG_NAME> always works and is checked first.
func EnvAlias(fs *pflag.FlagSet, flag string, names ...string) {
	must(fs.SetAnnotation(flag, envAnnotation, names))
}

// Sensitive marks a flag whose value is a secret: it is never printed.
func Sensitive(fs *pflag.FlagSet, flag string) {
	must(fs.SetAnnotation(flag, sensitiveAnnotation, []string{"true"}))
}

// IsSensitive reports whether the flag was marked with Sensitive.
func IsSensitive(f *pflag.Flag) bool {
	_, ok := f.Annotations[sensitiveAnnotation]
	return ok
}

func must(err error) {
	if err != nil {
		// Only reachable by a programming error: the flag was not defined.
		panic(err)
	}
}

// EnvNames lists the environment variables that can set a flag, in the order
// they are consulted.
func EnvNames(f *pflag.Flag) []string {
	names := []string{envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))}
	return append(names, f.Annotations[envAnnotation]...)
}

// Resolve fills every flag of fs that was not set on the command line from the
// environment, then from the config files. The config file is the --config
// flag's value (which may itself come from the environment); when that was
// not given, DefaultConfigFile if it exists. A file named explicitly must exist.
func Resolve(fs *pflag.FlagSet, src Sources) error {
	if src.LookupEnv == nil {
		src.LookupEnv = func(string) (string, bool) { return "", false }
	}
	fromEnv := map[string]bool{}
	var envErr error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || envErr != nil {
			return
		}
		for _, name := range EnvNames(f) {
			v, ok := src.LookupEnv(name)
			if !ok {
				continue
			}
			if err := setFlag(f, []string{v}); err != nil {
				envErr = fmt.Errorf("environment variable %s: %w", name, redact(f, err))
				return
			}
			fromEnv[f.Name] = true
			return
		}
	})
	if envErr != nil {
		return envErr
	}

	// The --config flag's value is the file (its default DefaultConfigFile);
	// only a file named on purpose must exist.
	path, explicit := DefaultConfigFile, false
	if f := fs.Lookup(ConfigFlag); f != nil {
		path, explicit = f.Value.String(), f.Changed || fromEnv[f.Name]
	}
	values, err := LoadFiles(path, explicit)
	if err != nil {
		return err
	}
	for _, kv := range values {
		f := fs.Lookup(kv.Key)
		if f == nil && src.IgnoreUnknownKeys {
			continue
		}
		if f == nil || kv.Key == ConfigFlag {
			return fmt.Errorf("%w %s: unknown key %q: keys are the flag names of this command (see --help)", ErrConfig, kv.File, kv.Key)
		}
		if f.Changed || fromEnv[f.Name] {
			continue
		}
		if err := setFlag(f, kv.Values); err != nil {
			return fmt.Errorf("%w %s: key %q: %w", ErrConfig, kv.File, kv.Key, redact(f, err))
		}
	}
	return nil
}

// setFlag gives a flag its values: a list replaces a list flag's default; a
// scalar flag takes exactly one value.
func setFlag(f *pflag.Flag, values []string) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		if len(values) == 1 && f.Value.Type() == "stringSlice" {
			// A comma-separated string, as on the command line.
			return f.Value.Set(values[0])
		}
		return sv.Replace(values)
	}
	if len(values) != 1 {
		return fmt.Errorf("takes one value, not a list of %d", len(values))
	}
	return f.Value.Set(values[0])
}

func redact(f *pflag.Flag, err error) error {
	if IsSensitive(f) {
		return errors.New("invalid value (not shown: it is a secret)")
	}
	return err
}

// KeyValue is one key of a config file, with its values as strings.
type KeyValue struct {
	File   string
	Key    string
	Values []string
}

// LoadFiles reads path and then path.d/*.yaml in name order. Later files
// override earlier ones key by key; a key written as "name+" appends to the
// list built so far instead. The result is in first-seen key order. A missing
// file is an error only when required is true.
func LoadFiles(path string, required bool) ([]KeyValue, error) {
	var files []string
	if _, err := os.Stat(path); err == nil {
		files = append(files, path)
	} else if required || !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w %s: %w", ErrConfig, path, err)
	}
	dropins, err := filepath.Glob(path + ".d/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("%w %s.d: %w", ErrConfig, path, err)
	}
	sort.Strings(dropins)
	files = append(files, dropins...)

	var order []string
	merged := map[string]*KeyValue{}
	for _, file := range files {
		kvs, err := parseFile(file)
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			key, appendTo := strings.CutSuffix(kv.Key, "+")
			prev, seen := merged[key]
			if !seen {
				order = append(order, key)
			}
			if appendTo && seen {
				prev.Values = append(prev.Values, kv.Values...)
				prev.File = file
				continue
			}
			merged[key] = &KeyValue{File: file, Key: key, Values: kv.Values}
		}
	}
	out := make([]KeyValue, 0, len(order))
	for _, key := range order {
		out = append(out, *merged[key])
	}
	return out, nil
}

func parseFile(file string) ([]KeyValue, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrConfig, file, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%w %s: malformed YAML: %w", ErrConfig, file, cleanYAMLError(err))
	}
	if len(root.Content) == 0 {
		return nil, nil // an empty file
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w %s: line %d: want a mapping of flag names to values", ErrConfig, file, doc.Line)
	}
	var out []KeyValue
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		values, err := nodeStrings(v)
		if err != nil {
			return nil, fmt.Errorf("%w %s: line %d: key %q: %w", ErrConfig, file, v.Line, k.Value, err)
		}
		out = append(out, KeyValue{File: file, Key: k.Value, Values: values})
	}
	return out, nil
}

// nodeStrings turns a scalar or a list of scalars into strings.
func nodeStrings(n *yaml.Node) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return nil, errors.New("want a list of strings, numbers or booleans")
			}
			out = append(out, e.Value)
		}
		return out, nil
	default:
		return nil, errors.New("want a string, number, boolean or a list of them")
	}
}

func cleanYAMLError(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// AbsPath makes the path given by flag absolute; an empty one is an error.
func AbsPath(flag, p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%s is empty: give a path", flag)
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("invalid %s %q: %w", flag, p, err)
	}
	return a, nil
}
