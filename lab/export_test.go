package lab

// NeedRoot is needRoot, for the tests of package lab_test.
var NeedRoot = needRoot
