package images

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A new node has no images folder until the loader makes it: the README's
// `cp app.tar <data-dir>/agent/images/` needs it to exist.
func TestLoaderMakesInbox(t *testing.T) {
	inbox := filepath.Join(t.TempDir(), "agent", "images")
	l := &Loader{Inbox: inbox, Interval: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, cancel) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the loader was not ready within 10 s")
	}
	st, err := os.Stat(inbox)
	if err != nil {
		t.Fatalf("the images folder was not made: %v", err)
	}
	if !st.IsDir() || st.Mode().Perm() != 0o755 {
		t.Errorf("images folder: %v, want a folder of mode 0755", st.Mode())
	}
}

func TestLoaderInboxRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l := &Loader{Inbox: filepath.Join(file, "images"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Run(ctx, cancel); err == nil {
		t.Fatal("Run made an images folder below a file")
	}
}
