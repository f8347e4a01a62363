variable "VERSION" { default = "1" }
target "default" {
  tags = ["acme/app:${VERSOIN}"]
}
