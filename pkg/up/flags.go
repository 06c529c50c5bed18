package up

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/settings"
)

// secretFlag is a flag of a host's install flags whose value is a secret:
// it goes to the service's environment file (0600) as Var, never into the
// unit or onto a command line.
type secretFlag struct {
	// Flag is the flag as given: --token, -t, --datastore-endpoint...
	Flag  string
	Var   string
	Value string
}

// kasaFlags returns the flags of kasa server or kasa agent (role), to read
// install flags as kasa reads them.
func kasaFlags(role string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(role, pflag.ContinueOnError)
	if role == RoleServer {
		(&config.ServerOptions{}).AddFlags(fs)
	} else {
		(&config.AgentNodeOptions{}).AddFlags(fs)
	}
	return fs
}

// splitSecrets reads flags, kasa server's or agent's (role), as kasa does
// (--flag=value, --flag value, -fvalue, -f=value, -f value) and takes out
// those whose values are secrets (the flags kasa marks sensitive). It
// returns the other flags, unchanged and in their order, and the secrets.
// A secret flag that only the other command has is an error; flags kasa
// does not know are kept, for kasa to refuse. As in install.sh, a secret
// flag is never taken as another flag's value. Errors never hold a value.
func splitSecrets(role string, flags []string) (rest []string, secrets []secretFlag, err error) {
	fs := kasaFlags(role)
	other := kasaFlags(RoleServer)
	if role == RoleServer {
		other = kasaFlags(RoleAgent)
	}
	// secret tells whether a is a secret flag, alone or with its value.
	secret := func(a string) bool {
		for _, set := range []*pflag.FlagSet{fs, other} {
			var f *pflag.Flag
			switch {
			case strings.HasPrefix(a, "--"):
				name, _, _ := strings.Cut(a[2:], "=")
				f = set.Lookup(name)
			case len(a) > 1 && a[0] == '-':
				f = set.ShorthandLookup(a[1:2])
			}
			if f != nil && settings.IsSensitive(f) {
				return true
			}
		}
		return false
	}
	for i := 0; i < len(flags); i++ {
		a := flags[i]
		var (
			f            *pflag.Flag
			given, value string
			hasValue     bool
		)
		switch {
		case a == "--" || !strings.HasPrefix(a, "-") || a == "-":
			rest = append(rest, a)
			continue
		case strings.HasPrefix(a, "--"):
			var name string
			name, value, hasValue = strings.Cut(a[2:], "=")
			given = "--" + name
			f = fs.Lookup(name)
			if f == nil {
				if o := other.Lookup(name); o != nil && settings.IsSensitive(o) {
					return nil, nil, fmt.Errorf("kasa %s has no %s flag", role, given)
				}
			}
		default:
			given = a[:2]
			f = fs.ShorthandLookup(a[1:2])
			if len(a) > 2 {
				value, hasValue = strings.TrimPrefix(a[2:], "="), true
			}
		}
		if f == nil || f.NoOptDefVal != "" {
			// Unknown, or a flag without a value (--debug).
			rest = append(rest, a)
			continue
		}
		if !settings.IsSensitive(f) {
			rest = append(rest, a)
			if !hasValue && i+1 < len(flags) && !secret(flags[i+1]) {
				i++
				rest = append(rest, flags[i])
			}
			continue
		}
		if !hasValue {
			if i+1 == len(flags) || secret(flags[i+1]) {
				return nil, nil, fmt.Errorf("%s needs a value", given)
			}
			i++
			value = flags[i]
		}
		secrets = append(secrets, secretFlag{Flag: given, Var: settings.EnvNames(f)[0], Value: value})
	}
	return rest, secrets, nil
}

// checkInstallFlags refuses install flags that cannot reach kasa as
// given: a secret flag without its value, one that the host's command does
// not have, or a value with a line break, which a systemd unit cannot hold
// (a secret's can: it goes to the environment file).
func checkInstallFlags(h *Host) error {
	rest, _, err := splitSecrets(h.Role, h.InstallFlags)
	if err != nil {
		return fmt.Errorf("installFlags: %w", err)
	}
	for _, f := range rest {
		if strings.Contains(f, "\n") {
			return fmt.Errorf("installFlags %q: a value with a line break cannot go in a systemd unit; put that setting in the host's /etc/kasa/config.yaml", f)
		}
	}
	return nil
}

// execLine is args as INSTALL_KASA_EXEC, which install.sh reads as sh
// reads words: each one in single quotes, so that spaces, quotes, % and $
// reach kasa exactly.
func execLine(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}
