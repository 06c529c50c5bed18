// Package structure tests the module's shape rather than its behaviour:
// imports_test.go holds the boundaries between kasa's packages (which
// package may not import which) and fails with the import chain that
// crosses one. It has no code of its own.
package structure
