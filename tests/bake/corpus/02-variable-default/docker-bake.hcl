variable "TAG" {
  default = "1.2.3"
}
variable "REPO" {
  default = "registry.local/team"
}
target "default" {
  tags = ["${REPO}/app:${TAG}", "${REPO}/app:latest"]
  args = { VERSION = TAG }
}
