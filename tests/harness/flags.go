package harness

import "strings"

// Strings is a repeatable string flag of the benches (flag.Var).
type Strings []string

func (l *Strings) String() string     { return strings.Join(*l, " ") }
func (l *Strings) Set(v string) error { *l = append(*l, v); return nil }
