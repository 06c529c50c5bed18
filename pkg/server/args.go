package server

import (
	"fmt"
	"slices"
	"strings"
)

// flagArgs merges a component's default flags with the user's pass-through
// flags (name=value, as given to --kube-apiserver-arg and friends). A user
// flag replaces the default of the same name; a name given several times by
// the user is passed several times, for flags that repeat. The result is
// sorted by name, as --flag=value arguments.
func flagArgs(defaults map[string]string, user []string) []string {
	merged := map[string][]string{}
	for k, v := range defaults {
		merged[k] = []string{v}
	}
	overridden := map[string]bool{}
	for _, a := range user {
		name, value, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !overridden[name] {
			merged[name] = nil
			overridden[name] = true
		}
		merged[name] = append(merged[name], value)
	}
	names := make([]string, 0, len(merged))
	for k := range merged {
		names = append(names, k)
	}
	slices.Sort(names)
	var out []string
	for _, k := range names {
		for _, v := range merged[k] {
			out = append(out, fmt.Sprintf("--%s=%s", k, v))
		}
	}
	return out
}

// flagValue returns the last value of a flag in args built by flagArgs.
func flagValue(args []string, name string) (string, bool) {
	value, found := "", false
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			value, found = v, true
		}
	}
	return value, found
}
