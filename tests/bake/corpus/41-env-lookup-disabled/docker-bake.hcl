variable "TAG" {
  default = "from-file"
}
target "default" {
  tags = ["acme/app:${TAG}"]
}
