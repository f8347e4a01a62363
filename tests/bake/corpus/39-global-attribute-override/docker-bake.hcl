variable "FOO" {
  default = "abc"
}
target "app" {
  args = { v1 = "pre-${FOO}" }
}
