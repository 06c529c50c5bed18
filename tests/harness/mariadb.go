package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// MariaDB is a MariaDB server of Debian's mariadb-server package
// (scripts/install-deps.sh) that runs in a temporary folder on a free
// loopback port, for the tests and benchmarks of an external datastore.
// Its user kasa (password Password) may do anything in the databases
// whose names begin with kasa, which do not exist until a server makes
// them; its user weak (the same password) may only log in.
type MariaDB struct {
	Port     int
	Password string

	dir  string
	user []string
	cmd  *exec.Cmd
	log  bytes.Buffer
	once sync.Once
}

// StartMariaDB starts one, with password for its users kasa and weak.
func StartMariaDB(password string) (*MariaDB, error) {
	for _, c := range []string{"mariadbd", "mariadb-install-db", "mariadb"} {
		if _, err := exec.LookPath(c); err != nil {
			return nil, fmt.Errorf("%s: %w (scripts/install-deps.sh installs mariadb-server)", c, err)
		}
	}
	dir, err := os.MkdirTemp("", "kasa-maria-")
	if err != nil {
		return nil, err
	}
	m := &MariaDB{Password: password, dir: dir}
	var user []string
	if os.Geteuid() == 0 {
		user = []string{"--user=root"}
	}
	data := filepath.Join(dir, "data")
	install := exec.Command("mariadb-install-db", append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db"}, user...)...)
	if out, err := install.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mariadb-install-db: %w\n%s", err, out)
	}
	ports, err := FreePorts(1)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	m.Port = ports[0]
	m.user = user
	if err := m.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	sql := fmt.Sprintf("CREATE USER 'kasa'@'127.0.0.1' IDENTIFIED BY '%s'; GRANT ALL ON `kasa%%`.* TO 'kasa'@'127.0.0.1';"+
		"CREATE USER 'weak'@'127.0.0.1' IDENTIFIED BY '%s';", password, password)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := m.Exec(sql)
		if err == nil {
			return m, nil
		}
		if time.Now().After(deadline) {
			m.Close()
			return nil, fmt.Errorf("MariaDB did not answer: %w\n%s", err, m.log.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// Exec runs statements as MariaDB's root, over its socket.
func (m *MariaDB) Exec(statements string) error {
	out, err := exec.Command("mariadb", "--no-defaults", "-S", filepath.Join(m.dir, "sock"), "-uroot", "-e", statements).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mariadb: %w\n%s", err, out)
	}
	return nil
}

// DSN is kine's DSN for the database name (which begins with kasa) as
// the user kasa.
func (m *MariaDB) DSN(name string) string {
	return fmt.Sprintf("mysql://kasa:%s@tcp(127.0.0.1:%d)/%s", m.Password, m.Port, name)
}

// Start starts the server, on its port and data, after StartMariaDB
// made them or Stop stopped it. Its users are named by address, so it
// looks up no client's name (a resolver that reaches nothing would stall
// each new connection).
func (m *MariaDB) Start() error {
	m.cmd = exec.Command("mariadbd", append([]string{"--no-defaults", "--datadir=" + filepath.Join(m.dir, "data"),
		"--socket=" + filepath.Join(m.dir, "sock"), "--bind-address=127.0.0.1", fmt.Sprintf("--port=%d", m.Port),
		"--pid-file=" + filepath.Join(m.dir, "pid"), "--innodb-buffer-pool-size=64M", "--skip-name-resolve"}, m.user...)...)
	m.log.Reset()
	m.cmd.Stdout, m.cmd.Stderr = &m.log, &m.log
	return m.cmd.Start()
}

// Stop stops the server cleanly, as `systemctl stop mariadb` does, and
// keeps its data for Start.
func (m *MariaDB) Stop() error {
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := m.cmd.Wait(); err != nil {
		return fmt.Errorf("mariadbd: %w\n%s", err, m.log.String())
	}
	return nil
}

// Close stops the server and removes its folder.
func (m *MariaDB) Close() {
	m.once.Do(func() {
		if m.cmd.ProcessState == nil {
			_ = m.cmd.Process.Kill()
			_ = m.cmd.Wait()
		}
		os.RemoveAll(m.dir)
	})
}
