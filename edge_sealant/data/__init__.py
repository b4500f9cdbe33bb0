"""Datasets: loading YOLO / ImageFolder layouts into image-level labels, and auditing them."""
