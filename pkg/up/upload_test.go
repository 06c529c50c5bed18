package up

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestUpload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keyFile, pub := clientKey(t, dir)
	port, _ := testSSHServer(t, pub)
	c, err := Dial(ctx, Target{Address: "127.0.0.1", Port: port, User: "tester", KeyPath: keyFile}, Auth{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := filepath.Join(dir, "payload")
	data := []byte("#!/bin/sh\necho payload\n")
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := fmt.Sprintf("%x", sha256.Sum256(data))
	remote := filepath.Join(t.TempDir(), "kasa")
	copied, err := c.Upload(ctx, local, remote, 0o755, sum)
	if err != nil || !copied {
		t.Fatalf("upload: %v %v", copied, err)
	}
	got, err := os.ReadFile(remote)
	fi, _ := os.Stat(remote)
	if err != nil || string(got) != string(data) || fi.Mode().Perm() != 0o755 {
		t.Errorf("uploaded %q mode %v: %v", got, fi.Mode(), err)
	}
	if copied, err := c.Upload(ctx, local, remote, 0o755, sum); err != nil || copied {
		t.Errorf("the same again: copied %v, %v", copied, err)
	}
	// While the file's size, time and inode are those remote.sha256 holds,
	// its bytes are not read: a change that keeps them is not seen...
	same := []byte(strings.ToUpper(string(data)))
	if err := os.WriteFile(remote, same, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(remote, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if copied, err := c.Upload(ctx, local, remote, 0o755, sum); err != nil || copied {
		t.Errorf("the cached sum was not used: copied %v, %v", copied, err)
	}
	// ...and any other change makes it read the file, and copy it again.
	if err := os.Chtimes(remote, fi.ModTime().Add(time.Second), fi.ModTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if copied, err := c.Upload(ctx, local, remote, 0o755, sum); err != nil || !copied {
		t.Errorf("a changed file: copied %v, %v", copied, err)
	}
	if got, _ := os.ReadFile(remote); string(got) != string(data) {
		t.Errorf("after the second upload the file holds %q", got)
	}
	// A file that matches but has no cached sum is read once, then not.
	if err := os.Remove(remote + ".sha256"); err != nil {
		t.Fatal(err)
	}
	if copied, err := c.Upload(ctx, local, remote, 0o755, sum); err != nil || copied {
		t.Errorf("no cached sum: copied %v, %v", copied, err)
	}
	if b, err := os.ReadFile(remote + ".sha256"); err != nil || !strings.HasPrefix(string(b), sum+"\n") {
		t.Errorf("remote.sha256 holds %q: %v", b, err)
	}
	other := filepath.Join(t.TempDir(), "kasa")
	if _, err := c.Upload(ctx, local, other, 0o755, strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "arrived damaged") {
		t.Errorf("a wrong sum: %v", err)
	}
	if _, err := os.Stat(other); err == nil {
		t.Error("a damaged upload was put in place")
	}
}

func TestSudoCommand(t *testing.T) {
	if line, in := sudoCommand("root", "id -u", "pw", nil); line != "id -u" || in != nil {
		t.Errorf("root: %q", line)
	}
	if line, _ := sudoCommand("pi", "echo 'a'", "", nil); line != `sudo -n -- sh -c 'echo '\''a'\'''` {
		t.Errorf("no password: %q", line)
	}
	line, in := sudoCommand("pi", "cat", "s3cret", strings.NewReader("data"))
	b, _ := io.ReadAll(in)
	if line != "sudo -S -p '' -- sh -c 'cat'" || string(b) != "s3cret\ndata" || strings.Contains(line, "s3cret") {
		t.Errorf("password: %q %q", line, b)
	}
}
