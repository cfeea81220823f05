// A shared library that is not a herd plugin: it has no HERD_PLUGIN export.
extern "C" int herd_test_not_a_plugin() {
    return 42;
}
