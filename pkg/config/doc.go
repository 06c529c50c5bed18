// Package config turns the flags of kasa's commands into typed, validated
// settings (Server, AgentNode, Agent).
//
// Every setting is a flag. A flag that was not given on the command line takes
// its value from the environment (KASA_<FLAG_NAME>, plus any alias such as
// KASA_URL), else from the config files (/etc/kasa/config.yaml, then
// /etc/kasa/config.yaml.d/*.yaml in name order, keys being flag names), else
// keeps its default: package settings applies that order to a parsed
// pflag.FlagSet, and the Complete methods of the options types here then
// validate and type the values.
package config
