package memory

import (
	"strings"
	"testing"
)

func TestReadOnlyMappings(t *testing.T) {
	maps := `00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/kasa
00651000-00652000 r--p 00051000 08:02 173521 /usr/bin/kasa
00652000-00655000 rw-p 00052000 08:02 173521 /usr/bin/kasa
00e03000-00e24000 rw-p 00000000 00:00 0 [heap]
7f1c0000-7f1c1000 r--p 00000000 08:02 9 /usr/lib/other.so
7f2c0000-7f2c1000 r-xp 00000000 08:02 10 /opt/my kasa
`
	got, err := readOnlyMappings(strings.NewReader(maps), "/usr/bin/kasa")
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]uintptr{{0x400000, 0x452000}, {0x651000, 0x652000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %x, want %x", got, want)
	}
	spaced, err := readOnlyMappings(strings.NewReader(maps), "/opt/my kasa")
	if err != nil || len(spaced) != 1 {
		t.Errorf("a path with a space: %x %v", spaced, err)
	}
	if _, err := readOnlyMappings(strings.NewReader("zz-yy r-xp 0 0 0 /usr/bin/kasa\n"), "/usr/bin/kasa"); err == nil {
		t.Error("a garbled line was accepted")
	}
}

func TestReleaseStartupCode(t *testing.T) {
	before, after, err := ReleaseStartupCode()
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 || after <= 0 || after > before {
		t.Errorf("resident %d KiB before, %d after", before, after)
	}
	// The process goes on running its code, paged back in.
	if n, err := ResidentKiB(); err != nil || n <= 0 {
		t.Errorf("ResidentKiB after: %d %v", n, err)
	}
}
