package hosts

import (
	"archive/tar"
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewNetworkRejects(t *testing.T) {
	for _, tc := range []struct{ name, subnet, want string }{
		{"pods", "10.42.7.0/24", "overlaps 10.42.0.0/16"},
		{"services", "10.0.0.0/8", "overlaps 10.42.0.0/16"},
		{"docker", "172.17.5.0/24", "overlaps 172.17.0.0/16"},
		{"tiny", "172.31.240.0/30", "at least 16 addresses"},
		{"v6", "fd00::/64", "IPv4"},
		{"Bad_Name", DefaultSubnet, "network name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewNetwork(tc.name, tc.subnet)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewNetwork(%q, %q) = %v, want an error with %q", tc.name, tc.subnet, err, tc.want)
			}
		})
	}
}

func TestAllocate(t *testing.T) {
	p := netip.MustParsePrefix("172.31.240.0/28")
	n := &Network{Subnet: p, Gateway: p.Addr().Next(), hosts: map[string]*Host{}}
	var got []string
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		a, err := n.allocate(name, "")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n.hosts[name] = &Host{Name: name, addr: a}
		got = append(got, a.String())
	}
	if want := "172.31.240.10 172.31.240.11 172.31.240.12 172.31.240.13 172.31.240.14"; strings.Join(got, " ") != want {
		t.Fatalf("addresses %v, want %s", got, want)
	}
	// .15 is the broadcast address.
	if a, err := n.allocate("f", ""); err == nil {
		t.Fatalf("allocated %s in a full network", a)
	}
	if _, err := n.allocate("a", ""); err == nil {
		t.Fatal("allocated a second host a")
	}
	for _, ip := range []string{"172.31.240.1", "172.31.240.10", "172.31.241.3", "172.31.240.0"} {
		if _, err := n.allocate("x", ip); err == nil {
			t.Errorf("allocated %s, the gateway, taken, outside or the network's address", ip)
		}
	}
	if a, err := n.allocate("x", "172.31.240.3"); err != nil || a.String() != "172.31.240.3" {
		t.Errorf("allocate 172.31.240.3: %v %v", a, err)
	}
}

func TestWriteTar(t *testing.T) {
	src := t.TempDir()
	if err := os.Chmod(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "f"), []byte("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/f", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeTar(&buf, src, "dst"); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("%s owned by %d:%d", hdr.Name, hdr.Uid, hdr.Gid)
		}
		b, _ := io.ReadAll(tr)
		got[hdr.Name] = strings.Join(strings.Fields(string(b)+" "+hdr.Linkname+" "+os.FileMode(hdr.Mode).String()), " ")
	}
	want := map[string]string{
		"dst/":      "-rwxr-xr-x",
		"dst/link":  "sub/f -rwxrwxrwx",
		"dst/sub/":  "-rwxr-x---",
		"dst/sub/f": "data -rw-r-----",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v", got)
	}
}

func TestImageFromScript(t *testing.T) {
	t.Setenv("KASA_HOST_IMAGE", "")
	img, err := Image()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(img, ImageRepo+":") || len(img) != len(ImageRepo)+1+12 {
		t.Fatalf("image %q", img)
	}
	t.Setenv("KASA_HOST_IMAGE", "other:1")
	if img, _ := Image(); img != "other:1" {
		t.Fatalf("KASA_HOST_IMAGE ignored: %q", img)
	}
}
