package netguard

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/google/nftables"
)

// HeldSet is the guard's set of held pod addresses.
const HeldSet = "held"

// HoldFor bounds a hold: an address the network policy controller has
// not taken up by then is let go (to the controller's rules, or none).
const HoldFor = 30 * time.Second

// HoldPlugin is the name of kasa's CNI plugin that holds new pods (and the
// name of its link to kasa's binary).
const HoldPlugin = "kasa-hold"

// A pod that starts in a namespace with a NetworkPolicy is held from its
// first packet until the network policy controller has written its rules:
// the CNI plugin kasa-hold, chained after the bridge plugin, puts the
// pod's addresses into the guard's set HeldSet, whose packets the guard
// drops (TCP and DNS try again), and the controller's side takes them out
// once the rules name them (Release). A pod of a namespace without a
// policy is never held: no policy can select it, and its traffic stays
// untouched.

// Hold holds addrs for HoldFor.
func Hold(addrs []netip.Addr) error {
	return heldElements(addrs, func(conn *nftables.Conn, set *nftables.Set, els []nftables.SetElement) error {
		return conn.SetAddElements(set, els)
	})
}

// Release lets addrs go.
func Release(addrs []netip.Addr) error {
	return heldElements(addrs, func(conn *nftables.Conn, set *nftables.Set, els []nftables.SetElement) error {
		return conn.SetDeleteElements(set, els)
	})
}

func heldElements(addrs []netip.Addr, op func(*nftables.Conn, *nftables.Set, []nftables.SetElement) error) error {
	if len(addrs) == 0 {
		return nil
	}
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	set, err := conn.GetSetByName(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: Table}, HeldSet)
	if err != nil {
		return fmt.Errorf("the guard's set %s: %w", HeldSet, err)
	}
	var els []nftables.SetElement
	for _, a := range addrs {
		b := a.As4()
		els = append(els, nftables.SetElement{Key: b[:], Timeout: HoldFor})
	}
	if err := op(conn, set, els); err != nil {
		return err
	}
	return conn.Flush()
}

// Held lists the held addresses.
func Held() ([]netip.Addr, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, err
	}
	set, err := conn.GetSetByName(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: Table}, HeldSet)
	if err != nil {
		return nil, err
	}
	els, err := conn.GetSetElements(set)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, e := range els {
		if a, ok := netip.AddrFromSlice(e.Key); ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// holdConf is what kasa-hold reads of its network configuration.
type holdConf struct {
	CNIVersion string `json:"cniVersion"`
	// PolicyNamespaces is the file of namespaces that have a policy.
	PolicyNamespaces string          `json:"policyNamespaces"`
	PrevResult       json.RawMessage `json:"prevResult"`
}

// CNIPlugin is kasa-hold, a chained CNI plugin: on ADD, when the pod's
// namespace (CNI_ARGS K8S_POD_NAMESPACE) is in the file PolicyNamespaces,
// it holds the pod's IPv4 addresses of the previous plugin's result, and
// passes that result on; on DEL it lets them go.
func CNIPlugin(stdin io.Reader, stdout io.Writer, getenv func(string) string) error {
	cmd := getenv("CNI_COMMAND")
	if cmd == "VERSION" {
		_, err := fmt.Fprint(stdout, `{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}`)
		return err
	}
	var conf holdConf
	if err := json.NewDecoder(stdin).Decode(&conf); err != nil {
		return cniError(stdout, conf.CNIVersion, fmt.Errorf("%s: network configuration: %w", HoldPlugin, err))
	}
	switch cmd {
	case "ADD":
		if len(conf.PrevResult) == 0 {
			return cniError(stdout, conf.CNIVersion, fmt.Errorf("%s must follow a plugin that gives the pod its addresses", HoldPlugin))
		}
		if policyNamespace(conf.PolicyNamespaces, cniArg(getenv("CNI_ARGS"), "K8S_POD_NAMESPACE")) {
			if err := Hold(resultAddrs(conf.PrevResult)); err != nil {
				return cniError(stdout, conf.CNIVersion, fmt.Errorf("%s: %w", HoldPlugin, err))
			}
		}
		_, err := stdout.Write(conf.PrevResult)
		return err
	case "DEL":
		// Nothing to undo when there is nothing: a DEL may come twice.
		_ = Release(resultAddrs(conf.PrevResult))
		return nil
	default: // CHECK, STATUS, GC
		return nil
	}
}

// cniError writes err as a CNI error result and returns it.
func cniError(stdout io.Writer, version string, err error) error {
	b, _ := json.Marshal(map[string]any{"cniVersion": version, "code": 999, "msg": err.Error()})
	_, _ = stdout.Write(b)
	return err
}

// resultAddrs are the IPv4 addresses of a CNI result.
func resultAddrs(result json.RawMessage) []netip.Addr {
	var r struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if json.Unmarshal(result, &r) != nil {
		return nil
	}
	var out []netip.Addr
	for _, ip := range r.IPs {
		if p, err := netip.ParsePrefix(ip.Address); err == nil && p.Addr().Is4() {
			out = append(out, p.Addr())
		}
	}
	return out
}

// cniArg is the value of key in CNI_ARGS (k=v;k=v).
func cniArg(args, key string) string {
	for _, kv := range strings.Split(args, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// policyNamespace reports whether ns is a line of file. No file: no
// controller writes one, none is held.
func policyNamespace(file, ns string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if s.Text() == ns {
			return true
		}
	}
	return false
}
