variable "TAG" {
  default = "dev"
}
variable "UNSET" {
  default = "kept"
}
target "default" {
  tags = ["app:${TAG}"]
  labels = { unset = UNSET }
}
