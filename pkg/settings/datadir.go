package settings

import "github.com/spf13/pflag"

// DataDirOptions are the settings of the commands that only look into this
// machine's data dir (kasa killall, crictl, ctr): --config and --data-dir.
// The config file they read is the server's or agent's, whose other keys
// they ignore (Sources.IgnoreUnknownKeys).
type DataDirOptions struct {
	ConfigFile string
	DataDir    string
}

// AddFlags defines --config and --data-dir on fs.
func (o *DataDirOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.ConfigFile, ConfigFlag, "c", DefaultConfigFile, "config file, for its data-dir")
	EnvAlias(fs, ConfigFlag, "KASA_CONFIG_FILE")
	fs.StringVarP(&o.DataDir, "data-dir", "d", DefaultDataDir, "kasa's data dir")
}

// Complete returns the data dir, made absolute as the server and agent
// make theirs.
func (o *DataDirOptions) Complete() (string, error) {
	return AbsPath("--data-dir", o.DataDir)
}

// ResolveDataDir returns the data dir from src and the config files alone,
// with no command line: KASA_DATA_DIR, else the config files' data-dir
// (the files that KASA_CONFIG_FILE or KASA_CONFIG names, else
// DefaultConfigFile and its config.yaml.d), else DefaultDataDir. It is for
// commands whose arguments all belong to another program (kasa crictl,
// ctr), which must not read them as kasa's flags.
func ResolveDataDir(src Sources) (string, error) {
	var o DataDirOptions
	fs := pflag.NewFlagSet("data-dir", pflag.ContinueOnError)
	o.AddFlags(fs)
	src.IgnoreUnknownKeys = true
	if err := Resolve(fs, src); err != nil {
		return "", err
	}
	return o.Complete()
}

// BindDataDir adds --config and --data-dir to fs and returns what finds
// the data dir after the command line is parsed, as every command finds
// it: --data-dir, else KASA_DATA_DIR (through lookupEnv), else data-dir in
// the config files, else DefaultDataDir.
func BindDataDir(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) func() (string, error) {
	var o DataDirOptions
	settings := pflag.NewFlagSet("settings", pflag.ContinueOnError)
	o.AddFlags(settings)
	fs.AddFlagSet(settings)
	return func() (string, error) {
		if err := Resolve(settings, Sources{LookupEnv: lookupEnv, IgnoreUnknownKeys: true}); err != nil {
			return "", err
		}
		return o.Complete()
	}
}
